"""jaxvision.layers.onednn_conv (oneDNN's convolutions as XLA FFI custom calls) gives what XLA's
convolution gives: values and gradients w.r.t. input and kernel, over kernel sizes, strides,
dilations, paddings, feature groups and dtypes; it is used where it applies and only there, and
says why when it cannot be built."""

import importlib
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.layers import conv2d, set_conv_impl
from tests.layers.onednn_testing import jaxpr_text, needs_onednn, one_device, several_devices  # noqa: F401
from tests.layers.test_lowering import _check_against_xla

# Every test traces the one-device programs CPU users run (tests/layers/onednn_testing).
pytestmark = pytest.mark.usefixtures("one_device")

onednn = importlib.import_module("jaxvision.layers.onednn_conv")  # the module, not the function
build = importlib.import_module("jaxvision.layers.onednn_build")


@needs_onednn
def test_builds_and_registers_here():
    # On x86-64 Linux jaxvision installs oneDNN and this machine has g++: it must build.
    assert onednn.available(), onednn.why_unavailable()
    assert onednn.why_unavailable() is None


@needs_onednn
@pytest.mark.parametrize("dtype,rtol", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
@pytest.mark.parametrize(
    "k,stride,dilation,padding,cin,cout,groups,size",
    [
        (3, 1, 1, "SAME", 8, 16, 1, 9),  # ResNet's 3x3
        (3, 2, 1, "SAME", 8, 8, 1, 10),  # strided, even size (TF's asymmetric SAME)
        (1, 1, 1, "VALID", 16, 8, 1, 7),  # pointwise
        (1, 2, 1, "VALID", 8, 12, 1, 9),  # strided pointwise (ResNet's downsample)
        (7, 2, 1, [(3, 3), (3, 3)], 3, 8, 1, 17),  # ResNet's stem, PyTorch padding
        (4, 4, 1, "VALID", 3, 8, 1, 10),  # patchify (ViT), drops the last 2 px
        (3, 1, 2, "SAME", 6, 6, 1, 11),  # dilated
        (5, 1, 1, "SAME", 12, 12, 12, 9),  # depthwise 5x5 (EfficientNet)
        (3, 2, 1, "SAME", 8, 16, 8, 9),  # depthwise with channel multiplier 2, strided
        (3, 1, 1, [(1, 0), (2, 1)], 8, 12, 4, 8),  # grouped, asymmetric padding
        (2, 3, 1, [(0, 1), (1, 0)], 4, 4, 1, 10),  # stride > kernel
        (5, 1, 1, "VALID", 1, 6, 1, 12),  # LeNet-5's conv1 (one channel)
    ],
)
def test_matches_xla(k, stride, dilation, padding, cin, cout, groups, size, dtype, rtol):
    rng = np.random.default_rng(k * 100 + cin * 10 + groups)
    x = jnp.asarray(rng.normal(size=(2, size, size + 1, cin)), dtype)
    w = jnp.asarray(rng.normal(size=(k, k, cin // groups, cout)), dtype)
    _check_against_xla(x, w, rtol, impl="onednn", strides=(stride, stride), padding=padding,
                       dilation=(dilation, dilation), groups=groups)


_ops = jaxpr_text


@needs_onednn
def test_used_where_it_applies_only():
    x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 4))
    assert "ffi_call" in _ops(lambda x, w: conv2d(x, w, impl="onednn"), x, w)
    assert "ffi_call" not in _ops(lambda x, w: conv2d(x, w, impl="cpu"), x, w)
    assert "ffi_call" not in _ops(lambda x, w: conv2d(x, w, impl="xla"), x, w)
    # Dtypes oneDNN is not given (float16, int) and mixed dtypes go to the other lowerings.
    assert not onednn.onednn_conv_applies(x.astype(jnp.float16), w.astype(jnp.float16),
                                          [(1, 1), (1, 1)], 1)
    assert not onednn.onednn_conv_applies(x, w.astype(jnp.bfloat16), [(1, 1), (1, 1)], 1)
    assert not onednn.onednn_conv_applies(x.astype(jnp.int32), w.astype(jnp.int32),
                                          [(1, 1), (1, 1)], 1)
    assert not onednn.onednn_conv_applies(x, w, [(-1, 0), (0, 0)], 1)  # negative padding
    # Empty outputs and inputs stay XLA's (as for every CPU lowering).
    small = jnp.ones((1, 2, 2, 4))
    y = conv2d(small, w, padding="VALID", impl="onednn")
    assert y.shape == (1, 0, 0, 4)


@needs_onednn
def test_not_used_with_several_devices(monkeypatch):
    # With several devices the SPMD partitioner would replicate the custom call (gather the
    # batch): the pure-JAX lowerings, which partition, must be kept.
    x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 4))
    several_devices(monkeypatch)
    assert not onednn.onednn_conv_applies(x, w, [(1, 1), (1, 1)], 1)


@needs_onednn
def test_default_on_cpu_and_under_vmap_and_jit():
    set_conv_impl(None)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, 2, 6, 6, 4)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 4, 5)), jnp.float32)
    assert "ffi_call" in _ops(lambda x, w: conv2d(x, w), x[0], w)  # 'auto' on the CPU
    # Per-example convolutions (vmap) and per-example gradients give XLA's values.
    got = jax.jit(jax.vmap(lambda x: conv2d(x, w, impl="onednn")))(x)
    want = jax.vmap(lambda x: conv2d(x, w, impl="xla"))(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    gw = jax.vmap(jax.grad(lambda w, x: jnp.sum(conv2d(x, w, impl="onednn") ** 2)),
                  (None, 0))(w, x)
    gw_xla = jax.vmap(jax.grad(lambda w, x: jnp.sum(conv2d(x, w, impl="xla") ** 2)),
                      (None, 0))(w, x)
    np.testing.assert_allclose(gw, gw_xla, rtol=1e-4, atol=1e-4)


@needs_onednn
def test_second_order_reverse_mode():
    # The VJP's own calls are oneDNN's too; hessian-vector products through reverse-over-reverse.
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(1, 5, 5, 2)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(3, 3, 2, 3)), jnp.float32)

    def hvp(impl):
        f = lambda w: jnp.sum(jnp.tanh(conv2d(x, w, impl=impl)))  # noqa: E731
        return jax.grad(lambda w: jnp.vdot(jax.grad(f)(w), jnp.ones_like(w)))(w)

    np.testing.assert_allclose(hvp("onednn"), hvp("xla"), rtol=1e-4, atol=1e-5)


def test_unavailable_says_why_and_falls_back(tmp_path):
    # A process where it is switched off (or oneDNN / a compiler is missing) keeps the other CPU
    # lowerings and says why; results are the same.
    code = (
        "import importlib, jax.numpy as jnp, numpy as np\n"
        "m = importlib.import_module('jaxvision.layers.onednn_conv')\n"
        "from jaxvision.layers import conv2d\n"
        "print(m.available(), '|', m.why_unavailable())\n"
        "x = jnp.ones((1, 6, 6, 4)); w = jnp.ones((3, 3, 4, 2))\n"
        "np.testing.assert_allclose(conv2d(x, w), conv2d(x, w, impl='xla'), rtol=1e-6)\n"
    )
    env = dict(os.environ, JAXVISION_ONEDNN="0", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False | switched off by JAXVISION_ONEDNN"


def test_missing_onednn_or_compiler_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(build, "_onednn_root", lambda: None)
    with pytest.raises(RuntimeError, match="oneDNN not found.*onednn-cpu-gomp"):
        build.build()
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        build.build()


@needs_onednn
def test_concurrent_calls_from_threads_are_correct():
    # A threaded inference server runs one compiled program from several threads at once; each
    # execution must have its own oneDNN scratchpad (found wrong 50/400 times before).
    import concurrent.futures

    rng = np.random.default_rng(7)
    xs = [jnp.asarray(rng.normal(size=(4, 16, 16, 8)), jnp.float32) for _ in range(4)]
    w = jnp.asarray(rng.normal(size=(3, 3, 8, 8)), jnp.float32)
    f = jax.jit(lambda x: conv2d(x, w, impl="onednn"))
    want = [np.asarray(conv2d(x, w, impl="xla")) for x in xs]

    def run(i):
        return sum(not np.allclose(f(xs[i]), want[i], rtol=1e-4, atol=1e-4) for _ in range(40))

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(run, range(4))) == 0


@pytest.mark.parametrize("impl", ["onednn", "cpu", "xla"])
@pytest.mark.parametrize("k,dilation,pads", [
    (3, 1, [(2, 2), (2, 0)]),  # the widest pads oneDNN is given: extent - 1
    (3, 2, [(4, 0), (0, 4)]),  # dilated: extent 5
    (3, 1, [(4, 0), (4, 0)]),  # wider than the kernel: XLA:CPU's dx was ~1e30, oneDNN's wrong
    (3, 1, [(4, 4), (6, 5)]),  # (and oneDNN's forward crashed)
    (1, 1, [(1, 2), (3, 0)]),  # a padded 1x1
])
def test_padding_wider_than_the_kernel(impl, k, dilation, pads):
    # Reference: the zeros padded onto x explicitly, then an unpadded convolution.
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 8, 8, 3)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(k, k, 3, 4)), jnp.float32)

    def loss(x, w, impl, pads):
        y = conv2d(x, w, padding=pads, dilation=(dilation, dilation), impl=impl)
        return jnp.sum(jnp.sin(y) * jnp.arange(y.size).reshape(y.shape) / y.size)

    def reference(x, w):
        return loss(jnp.pad(x, [(0, 0), *pads, (0, 0)]), w, "xla", "VALID")

    got = jax.value_and_grad(loss, (0, 1))(x, w, impl, pads)
    want = jax.value_and_grad(reference, (0, 1))(x, w)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(np.abs(b).max()))


@pytest.mark.parametrize("impl", ["onednn", "cpu", "xla"])
def test_bad_arguments_refused_by_every_lowering(impl):
    x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 3, 6))
    with pytest.raises(ValueError, match="needs x with 3 channels"):
        conv2d(x, w, impl=impl)  # 4 channels into a 3-channel kernel
    w = jnp.ones((3, 3, 4, 6))
    with pytest.raises(ValueError, match="dilation must be two integers >= 1"):
        conv2d(x, w, dilation=(0, 1), impl=impl)
    for bad in [(0, 1), (1.5, 1), (1, 2, 1), 0]:
        with pytest.raises(ValueError, match="strides must be two integers >= 1"):
            conv2d(x, w, strides=bad, impl=impl)
    for bad in [[(1, 1)], [(1, 1)] * 3, [(1, 1, 1), (1, 1)]]:
        with pytest.raises(ValueError, match="padding must be 'SAME', 'VALID' or two"):
            conv2d(x, w, padding=bad, impl=impl)
    # An int stride means both axes (as the Conv modules take it) and gives XLA's result.
    np.testing.assert_allclose(conv2d(x, w, strides=2, impl=impl),
                               conv2d(x, w, strides=(2, 2), impl="xla"), rtol=1e-5)


def test_unknown_impl_refused():
    x, w = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 6))
    with pytest.raises(ValueError, match="unknown conv impl 'onednnx'"):
        conv2d(x, w, impl="onednnx")  # a typo used to run XLA's convolution silently
    assert "ffi_call" in _ops(lambda x, w: conv2d(x, w, impl="auto"), x, w) or \
        not onednn.available()  # 'auto' is the backend's default, oneDNN on the CPU


LIB = "libjaxvision_onednn_conv.so"


def _fake_compiler(tmp_path, body="open(out, 'wb').write(b'library' * 1000)"):
    # A stand-in for g++ that writes its -o file and counts its runs.
    script = tmp_path / "cc.py"
    script.write_text("import sys, pathlib\nout = sys.argv[sys.argv.index('-o') + 1]\n"
                      f"p = pathlib.Path({str(tmp_path / 'runs')!r}); "
                      "p.write_text(str(int(p.read_text() or 0) + 1) if p.exists() else '1')\n"
                      + body + "\n")
    return [sys.executable, str(script)]


def test_damaged_cached_library_is_rebuilt(tmp_path):
    # A truncated library crashed every later process (SIGBUS on load): its SHA-256 is recorded
    # at build time and a copy that does not match is rebuilt.
    cmd, out_dir = _fake_compiler(tmp_path), str(tmp_path / "cache")
    out = build.cached_or_compiled(out_dir, cmd, LIB)
    good = open(out, "rb").read()
    assert build.cached_or_compiled(out_dir, cmd, LIB) == out
    assert (tmp_path / "runs").read_text() == "1"  # intact: reused
    with open(out, "r+b") as f:
        f.truncate(100)
    assert build.cached_or_compiled(out_dir, cmd, LIB) == out
    assert (tmp_path / "runs").read_text() == "2" and open(out, "rb").read() == good
    os.unlink(out + ".sha256")  # no record (an older build): rebuilt too
    build.cached_or_compiled(out_dir, cmd, LIB)
    assert (tmp_path / "runs").read_text() == "3"
    assert sorted(os.listdir(out_dir)) == ["libjaxvision_onednn_conv.so",
                                           "libjaxvision_onednn_conv.so.sha256"]


def test_failed_compile_names_its_reason(tmp_path):
    cmd = _fake_compiler(tmp_path, "sys.exit(3)")  # fails silently, like CXX=false
    with pytest.raises(RuntimeError, match="exit status 3"):
        build.cached_or_compiled(str(tmp_path / "c"), cmd, LIB)
    cmd = _fake_compiler(tmp_path, "import os; os.unlink(out); sys.exit('ld: cannot find -ldnnl')")
    with pytest.raises(RuntimeError, match="cannot find -ldnnl"):  # not a FileNotFoundError
        build.cached_or_compiled(str(tmp_path / "c"), cmd, LIB)
    assert os.listdir(tmp_path / "c") == []  # no half-written files left behind


def test_bad_cxx_is_named(monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    with pytest.raises(RuntimeError, match="'/nonexistent/g\\+\\+' \\(from \\$CXX="):
        build.build()
    monkeypatch.setenv("CXX", "no-such-ccache g++")  # the launcher is what is missing
    with pytest.raises(RuntimeError, match="'no-such-ccache' \\(from \\$CXX='no-such-ccache g"):
        build.build()


def test_compile_that_never_ends_is_stopped(monkeypatch, tmp_path):
    # A stuck compiler (a ccache lock) must not hang the first model call forever.
    monkeypatch.setattr(build, "COMPILE_TIMEOUT_S", 1)
    cmd = _fake_compiler(tmp_path, "import time; time.sleep(30)")
    with pytest.raises(RuntimeError, match="did not finish in 1 s"):
        build.cached_or_compiled(str(tmp_path / "c"), cmd, LIB)
    assert os.listdir(tmp_path / "c") == []


def test_failed_compile_names_its_first_error(tmp_path):
    # The root cause is the first error, not the tail of a long cascade.
    cascade = "\n".join(["x.cc: In function 'f':", "x.cc:3:1: error: 'foo' was not declared"]
                        + [f"x.cc:{i}:1: note: candidate {i} " + "w" * 60 for i in range(40)])
    cmd = _fake_compiler(tmp_path, f"sys.exit({cascade!r})")
    with pytest.raises(RuntimeError, match="error: 'foo' was not declared"):
        build.cached_or_compiled(str(tmp_path / "c"), cmd, LIB)


def test_unparsable_cxx_is_named(monkeypatch):
    monkeypatch.setenv("CXX", "ccache 'g++")  # unbalanced quote: not a ValueError from shlex
    with pytest.raises(RuntimeError, match="cannot be parsed"):
        build.build()


def test_temp_fallback_must_be_private(tmp_path):
    # The temp dir is shared and the fallback's name predictable: a directory another user could
    # have planted a library in (not ours, group/other-writable, or a symlink) is refused.
    mine = tmp_path / "jaxvision-me"
    build._private_dir(str(mine))
    assert (os.stat(mine).st_mode & 0o777) == 0o700
    build._private_dir(str(mine))  # ours and private: accepted again
    os.chmod(mine, 0o777)
    with pytest.raises(PermissionError, match="not a private directory"):
        build._private_dir(str(mine))
    os.chmod(mine, 0o700)
    link = tmp_path / "link"
    os.symlink(mine, link)
    with pytest.raises(PermissionError, match="not a private directory"):
        build._private_dir(str(link))


@needs_onednn
def test_unwritable_cache_builds_in_the_temp_dir(monkeypatch, tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(not_a_dir))
    monkeypatch.setattr(build.tempfile, "tempdir", str(tmp_path / "tmp"))
    os.makedirs(tmp_path / "tmp")
    path = build.build()
    assert path.startswith(str(tmp_path / "tmp" / f"jaxvision-{os.getuid()}"))
    assert build.intact(path)
    # Someone else's (here: a world-writable) fallback is refused, with the reason.
    os.chmod(tmp_path / "tmp" / f"jaxvision-{os.getuid()}", 0o777)
    with pytest.raises(RuntimeError, match="not a private directory"):
        build.build()


def test_no_compiler_is_said_in_one_warning_line(tmp_path):
    # Every handler library (convolution, pooling, BatchNorm sums, matmul) fails to build for the
    # same reason; the user is told once, in one line, and the model still runs (pure-JAX forms).
    code = (
        "import jax, jax.numpy as jnp\n"
        "from jaxvision import models\n"
        "m = models.create('resnet18', num_classes=3)\n"
        "x = jnp.ones((2, 32, 32, 3))\n"
        "v = jax.jit(m.init)(jax.random.key(0), x)\n"
        "f = lambda p: m.apply({**v, 'params': p}, x, train=True, mutable=['batch_stats'])[0].sum()\n"
        "print('ok', float(jax.jit(jax.grad(f))(v['params'])['head']['bias'].sum()))\n"
    )
    env = dict(os.environ, CXX="/nonexistent/g++", XDG_CACHE_HOME=str(tmp_path),
               JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one device, as a user's process
    env.pop("JAXVISION_ONEDNN", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    # d(sum of logits) / d(head bias) is the batch size (2) for each of the 3 classes
    assert out.stdout.strip() == "ok 6.0"
    said = [line for line in out.stderr.splitlines() if "unavailable" in line]
    assert len(said) == 1, out.stderr
    assert "no C++ compiler" in said[0] and "/nonexistent/g++" in said[0]
