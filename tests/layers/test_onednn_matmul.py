"""jaxvision.layers.onednn_matmul (oneDNN's matmul as an XLA FFI custom call) gives what XLA's dot
gives: values, gradients w.r.t. both operands and second-order gradients, over odd shapes and
both dtypes; it is safe from several threads; the Dense layers use it where it applies and only
there; a ViT's logits and gradients match XLA's."""

import importlib
import os
import subprocess
import sys
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxvision import models
from jaxvision.layers import dense as dense_mod
from jaxvision.layers import onednn_build, using_conv_impl
from jaxvision.layers import onednn_matmul as om
from tests.layers.onednn_testing import jaxpr_text, needs_onednn, one_device, several_devices  # noqa: F401

# Every test traces the one-device programs CPU users run (tests/layers/onednn_testing).
pytestmark = pytest.mark.usefixtures("one_device")


def _xla(a, b):
    """The reference: lax.dot_general contracting a's last axis with b's first, f32 accumulation."""
    return lax.dot_general(a, b, (((a.ndim - 1,), (0,)), ((), ())),
                           preferred_element_type=jnp.float32).astype(a.dtype)


def _rand(rng, shape, dtype):
    return jnp.asarray(rng.normal(size=shape), dtype)


# bf16: inputs are exact in bf16 and both sides accumulate in f32; the difference is the final
# rounding of each product to bf16 (2^-8 relative) and of the cotangent fed to the next product.
TOLS = {jnp.float32: dict(rtol=1e-5, atol=1e-5), jnp.bfloat16: dict(rtol=2e-2, atol=2e-2)}


@needs_onednn
def test_builds_and_registers_here():
    assert om.available(), om.why_unavailable()
    assert om.why_unavailable() is None


@needs_onednn
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("a_shape,n", [
    ((1, 1), 1),          # M = K = N = 1
    ((1, 7), 5),          # one row
    ((9, 1), 3),          # K = 1 (outer product)
    ((13, 17), 1),        # one column
    ((33, 19), 21),       # nothing a multiple of 16
    ((2, 5, 3, 24), 40),  # 3 leading axes flattened into rows
    ((7,), 6),            # a vector times a matrix
])
def test_values_and_gradients_match_xla(a_shape, n, dtype):
    rng = np.random.default_rng(sum(a_shape) * 10 + n)
    a = _rand(rng, a_shape, dtype)
    b = _rand(rng, (a_shape[-1], n), dtype)
    got = om.onednn_matmul(a, b)
    assert got.shape == (*a_shape[:-1], n) and got.dtype == dtype
    tol = TOLS[dtype]
    np.testing.assert_allclose(np.asarray(got, np.float32), np.asarray(_xla(a, b), np.float32),
                               **tol)
    ct = _rand(rng, got.shape, dtype)
    _, vjp = jax.vjp(om.onednn_matmul, a, b)
    _, vjp_ref = jax.vjp(_xla, a, b)
    for g, want in zip(vjp(ct), vjp_ref(ct), strict=True):
        assert g.dtype == dtype
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(want, np.float32), **tol)


@needs_onednn
def test_every_transpose_and_numpy():
    # The handler's four operand layouts (the backward passes use all of them) against numpy.
    om.available()
    rng = np.random.default_rng(3)
    m, k, n = 6, 11, 5
    a, b = rng.normal(size=(m, k)).astype(np.float32), rng.normal(size=(k, n)).astype(np.float32)
    for ta in (False, True):
        for tb in (False, True):
            got = om._mm(ta, tb, jnp.asarray(a.T.copy() if ta else a),
                         jnp.asarray(b.T.copy() if tb else b))
            np.testing.assert_allclose(got, a @ b, rtol=1e-5, atol=1e-5)


@needs_onednn
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
def test_second_order_reverse_mode(ta, tb):
    # Gradients of gradients (the backward products' own VJPs) for every layout, against XLA.
    om.available()
    rng = np.random.default_rng(4)
    a = _rand(rng, (5, 3) if ta else (3, 5), jnp.float32)
    b = _rand(rng, (4, 5) if tb else (5, 4), jnp.float32)

    def f(mm, a, b):
        return jnp.sum(jnp.tanh(mm(a, b)) ** 2)

    def ref(a, b):
        return (a.T if ta else a) @ (b.T if tb else b)

    def hvp(mm):
        g = lambda a, b: jax.grad(f, (1, 2))(mm, a, b)  # noqa: E731
        return jax.grad(lambda a, b: sum(jnp.sum(jnp.sin(x)) for x in g(a, b)), (0, 1))(a, b)

    for got, want in zip(hvp(lambda a, b: om._mm(ta, tb, a, b)), hvp(ref), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@needs_onednn
def test_concurrent_calls_from_threads():
    # A per-execution scratchpad: 4 threads running one jitted function many times each get
    # their own results (a shared scratchpad gives garbage).
    rng = np.random.default_rng(5)
    b = _rand(rng, (96, 80), jnp.float32)
    f = jax.jit(lambda a: jax.grad(lambda a, b: jnp.sum(om.onednn_matmul(a, b) ** 2), (0, 1))(a, b))
    inputs = [_rand(rng, (70, 96), jnp.float32) for _ in range(4)]
    wants = [jax.grad(lambda a, b: jnp.sum(_xla(a, b) ** 2), (0, 1))(a, b) for a in inputs]
    errors = []

    def work(i):
        for _ in range(40):
            for g, w in zip(f(inputs[i]), wants[i], strict=True):
                if not np.allclose(g, w, rtol=1e-4, atol=1e-3):
                    errors.append(i)
                    return

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@needs_onednn
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_linear_with_bias_matches_numpy_and_xla(dtype):
    # C = A B + bias in one call; its gradients (dA, dB and the bias gradient as ones . dC)
    # against XLA's autodiff of the same expression, and the second order against XLA's.
    rng = np.random.default_rng(8)
    a, b, bias, ct = (_rand(rng, s, dtype) for s in ((2, 7, 13), (13, 5), (5,), (2, 7, 5)))
    got, vjp = jax.vjp(om.onednn_linear, a, b, bias)
    tol = TOLS[dtype]
    want = (np.asarray(a, np.float64) @ np.asarray(b, np.float64)) + np.asarray(bias, np.float64)
    assert got.dtype == dtype
    np.testing.assert_allclose(np.asarray(got, np.float32), want, **tol)
    ref = lambda a, b, bias: (_xla(a, b).astype(jnp.float32) + bias).astype(a.dtype)  # noqa: E731
    for g, w in zip(vjp(ct), jax.vjp(ref, a, b, bias)[1](ct), strict=True):
        assert g.dtype == dtype
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(w, np.float32), **tol)

    def penalty(f, a, b, bias):
        g = jax.grad(lambda *p: jnp.sum(jnp.tanh(f(*p)) ** 2), (0, 1, 2))(a, b, bias)
        return sum(jnp.sum(jnp.sin(x)) for x in g)

    a32, b32, bias32 = (x.astype(jnp.float32) for x in (a, b, bias))
    for g, w in zip(jax.grad(penalty, (1, 2, 3))(om.onednn_linear, a32, b32, bias32),
                    jax.grad(penalty, (1, 2, 3))(ref, a32, b32, bias32), strict=True):
        # Second derivatives of tanh^2 at |x| up to ~10 cancel: float32 noise ~1e-5 of max |w|.
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(w))))
    with pytest.raises(ValueError, match="bias"):
        om.onednn_linear(a, b, bias[:3])


@pytest.mark.parametrize("features,in_axes,x_shape", [(6, 1, (2, 3, 8)), ((3, 4), 1, (2, 8)),
                                                      (5, 2, (2, 3, 4, 6))])
def test_dense_is_flax_dense_general(features, in_axes, x_shape):
    # Same parameters from the same RNG (flax initializes the flattened kernel), same outputs and
    # gradients as flax's own DenseGeneral, with and without oneDNN.
    from flax import linen as nn

    x = jnp.asarray(np.random.default_rng(9).normal(size=x_shape), jnp.float32)
    init = dict(kernel_init=nn.initializers.xavier_uniform(), bias_init=nn.initializers.normal(1.0))
    ours = dense_mod.Dense(features, in_axes=in_axes, **init)
    theirs = nn.DenseGeneral(features, axis=tuple(range(-in_axes, 0)), **init)
    p_ours, p_theirs = ours.init(jax.random.key(3), x), theirs.init(jax.random.key(3), x)
    for a, b in zip(jax.tree.leaves(p_ours), jax.tree.leaves(p_theirs), strict=True):
        assert a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    loss = lambda m, p: jnp.sum(jnp.sin(m.apply(p, x)))  # noqa: E731
    want = jax.value_and_grad(loss, 1)(theirs, p_theirs)
    for impl in ("onednn", "xla"):
        with using_conv_impl(impl):
            got = jax.value_and_grad(loss, 1)(ours, p_ours)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _dense_jaxpr(x, kernel) -> str:
    dims = (((x.ndim - 1,), (0,)), ((), ()))
    f = lambda x, w: dense_mod.f32_accumulating_dot_general(x, w, dims)  # noqa: E731
    return str(jax.make_jaxpr(jax.grad(lambda x, w: jnp.sum(f(x, w)), (0, 1)))(x, kernel))


@needs_onednn
def test_dense_uses_it_where_it_applies_only():
    x, w = jnp.ones((2, 3, 8)), jnp.ones((8, 4))
    for dtype in (jnp.float32, jnp.bfloat16):
        ops = _dense_jaxpr(x.astype(dtype), w.astype(dtype))
        assert ops.count("jaxvision_onednn_matmul") == 3  # forward, dx, dw
    with using_conv_impl("xla"):  # what exports and forward-mode autodiff use
        assert "ffi_call" not in _dense_jaxpr(x, w)
        jax.jvp(lambda x: dense_mod.f32_accumulating_dot_general(
            x, w, (((2,), (0,)), ((), ()))), (x,), (x,))
    # float16, mixed dtypes, empty operands: not oneDNN's.
    assert "ffi_call" not in _dense_jaxpr(x.astype(jnp.float16), w.astype(jnp.float16))
    assert not om.onednn_matmul_applies(x, w.astype(jnp.bfloat16))
    assert not om.onednn_matmul_applies(jnp.ones((0, 8)), w)
    assert not om.onednn_matmul_applies(x.astype(jnp.int32), w.astype(jnp.int32))
    with pytest.raises(ValueError, match="float32 or two bfloat16"):
        om.onednn_matmul(x, w.astype(jnp.bfloat16))
    with pytest.raises(ValueError, match=r"\(K, N\)"):
        om.onednn_matmul(x, jnp.ones((7, 4)))


@needs_onednn
def test_dense_general_multi_axis_matches_xla():
    # DenseGeneral's (N, T, D) x (D, H, Dh) and (N, T, H, Dh) x (H, Dh, D) products.
    rng = np.random.default_rng(6)
    for x_shape, w_shape, k in [((2, 5, 12), (12, 3, 4), 1), ((2, 5, 3, 4), (3, 4, 12), 2)]:
        x, w = _rand(rng, x_shape, jnp.float32), _rand(rng, w_shape, jnp.float32)
        dims = (tuple(range(len(x_shape) - k, len(x_shape))), tuple(range(k))), ((), ())

        def loss(dot, x, w, dims=dims):
            return jnp.sum(jnp.sin(dot(x, w, dims)))

        assert "jaxvision_onednn_matmul" in str(jax.make_jaxpr(
            lambda x, w: loss(dense_mod.f32_accumulating_dot_general, x, w))(x, w))
        got = jax.value_and_grad(loss, (1, 2))(dense_mod.f32_accumulating_dot_general, x, w)
        want = jax.value_and_grad(loss, (1, 2))(lax.dot_general, x, w)
        for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_not_used_with_several_devices(monkeypatch):
    # With several devices the SPMD partitioner would replicate the custom call (gather the
    # batch): XLA's dot, which partitions, must be kept.
    several_devices(monkeypatch)
    x, w = jnp.ones((2, 8)), jnp.ones((8, 4))
    assert not om.onednn_matmul_applies(x, w)
    assert "ffi_call" not in _dense_jaxpr(x, w)


@needs_onednn
def test_not_used_off_the_cpu_backend(monkeypatch):
    # The handler is registered for the CPU only: a forced 'onednn' impl on a GPU must not
    # put a CPU custom call in a GPU program.
    x, w = jnp.ones((2, 8)), jnp.ones((8, 4))
    assert om.onednn_matmul_applies(x, w)
    monkeypatch.setattr(om.jax, "default_backend", lambda: "gpu")
    assert not om.onednn_matmul_applies(x, w)


def test_switched_off_falls_back():
    # JAXVISION_ONEDNN=0: unavailable, says why, and Dense products are XLA's, same values.
    code = (
        "import jax.numpy as jnp, numpy as np, jax\n"
        "from jaxvision.layers import onednn_matmul as om, dense\n"
        "print(om.available(), '|', om.why_unavailable())\n"
        "x = jnp.arange(24.).reshape(2, 3, 4); w = jnp.ones((4, 5))\n"
        "dims = (((2,), (0,)), ((), ()))\n"
        "f = lambda x: dense.f32_accumulating_dot_general(x, w, dims)\n"
        "assert 'ffi_call' not in str(jax.make_jaxpr(f)(x))\n"
        "np.testing.assert_allclose(f(x), x @ w)\n"
    )
    env = dict(os.environ, JAXVISION_ONEDNN="0", JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one device: where oneDNN would otherwise be used
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False | switched off by JAXVISION_ONEDNN"


@needs_onednn
@pytest.mark.parametrize("dtype,rtol", [("float32", 1e-4), ("bfloat16", 5e-2)])
def test_tiny_vit_matches_xla(dtype, rtol):
    # A ViT's logits and parameter gradients with oneDNN's Dense products (and float32
    # LayerNorms) vs XLA's dot (and Flax's LayerNorm).
    model = models.create("vit_s16", dtype=dtype, num_classes=5, hidden_size=32, num_layers=2,
                          num_heads=2, mlp_dim=48, patch_size=8)
    x = jnp.asarray(np.random.default_rng(7).normal(size=(2, 16, 16, 3)), jnp.float32)
    params = model.init(jax.random.key(0), x)["params"]
    # Random weights everywhere (the head is zero-initialized: its gradients alone would pass).
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(tree, [p + 0.2 * jax.random.normal(k, p.shape, p.dtype)
                                       for p, k in zip(leaves, keys, strict=True)])

    def loss(p):
        logits = model.apply({"params": p}, x)
        return jnp.sum(jnp.sin(logits.astype(jnp.float32))), logits

    results = {}
    for impl in ("onednn", "xla"):
        with using_conv_impl(impl):
            jaxpr = str(jax.make_jaxpr(jax.grad(loss, has_aux=True))(params))
            # 2 blocks x 6 Dense (q, k, v, out, fc1, fc2), 4 calls each (the forward product with
            # its bias, dA, dB, the bias gradient), + the head's 3 (nn.Dense: bias added by XLA).
            assert jaxpr.count("jaxvision_onednn_matmul") == (51 if impl == "onednn" else 0)
            assert jaxpr.count("jaxvision_onednn_matmul_matmul_bias") == (12 if impl == "onednn" else 0)
            # float32 LayerNorms (2 per block + the final one) on oneDNN too: forward, backward.
            norms = 10 if impl == "onednn" and dtype == "float32" else 0
            assert jaxpr.count("jaxvision_onednn_layer_norm") == norms
            results[impl] = jax.jit(jax.grad(loss, has_aux=True))(params)
    (g1, l1), (g2, l2) = results["onednn"], results["xla"]
    np.testing.assert_allclose(np.asarray(l1, np.float32), np.asarray(l2, np.float32),
                               rtol=rtol, atol=rtol)
    scale = max(float(jnp.max(jnp.abs(g.astype(jnp.float32)))) for g in jax.tree.leaves(g2))
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True):
        np.testing.assert_allclose(np.asarray(a, np.float32), np.asarray(b, np.float32),
                                   rtol=rtol, atol=rtol * scale)


def test_dense_arguments_checked_as_flax_does():
    x = jnp.ones((4, 5))
    # A NumPy integer is a feature count (flax takes it); features from any int-like.
    p = dense_mod.Dense(np.int64(6)).init(jax.random.key(0), x)
    assert p["params"]["kernel"].shape == (5, 6)
    for bad in (0, 3, -1):  # contracting no axis, or more axes than the input has
        with pytest.raises(ValueError, match="1 <= in_axes <= 2"):
            dense_mod.Dense(6, in_axes=bad).init(jax.random.key(0), x)


@needs_onednn
def test_no_handler_family_is_used_off_the_cpu_backend(monkeypatch):
    # Every oneDNN family is registered for the CPU only: with 'onednn' forced on a GPU, none
    # of the six may put a CPU custom call in a GPU program (conv and pool once missed this).
    # importlib: the package re-exports functions of the same names as these modules.
    onednn_attention, onednn_conv, onednn_gelu, onednn_layer_norm, onednn_pool = (
        importlib.import_module(f"jaxvision.layers.onednn_{n}")
        for n in ("attention", "conv", "gelu", "layer_norm", "pool"))
    x, w, q = jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 4)), jnp.ones((2, 5, 2, 4))
    checks = {
        "matmul": lambda: om.onednn_matmul_applies(x, w[0, 0]),
        "conv": lambda: onednn_conv.onednn_conv_applies(x, w, [(1, 1), (1, 1)], 1),
        "pool": lambda: onednn_pool.onednn_pool_applies(x, (3, 3), (2, 2), [(1, 1), (1, 1)]),
        "gelu": lambda: onednn_gelu.onednn_gelu_applies(x),
        "attention": lambda: onednn_attention.onednn_attention_applies(q, q, q),
        "layer_norm": lambda: onednn_layer_norm.onednn_layer_norm_applies(x, w[0, 0, 0], w[0, 0, 0]),
    }
    assert {name: check() for name, check in checks.items()} == dict.fromkeys(checks, True)
    monkeypatch.setattr(om.jax, "default_backend", lambda: "gpu")
    assert {name: check() for name, check in checks.items()} == dict.fromkeys(checks, False)
    # A dtype the handlers are not built for is refused by every family alike.
    monkeypatch.undo()
    monkeypatch.setattr(onednn_build, "single_device", lambda: True)
    x16, w16 = x.astype(jnp.float16), w.astype(jnp.float16)
    assert not om.onednn_matmul_applies(x16, w16[0, 0])
    assert not om.onednn_matmul_applies(x, w16[0, 0])
    assert not onednn_conv.onednn_conv_applies(x16, w16, [(1, 1), (1, 1)], 1)
    assert not onednn_pool.onednn_pool_applies(x16, (3, 3), (2, 2), [(1, 1), (1, 1)])
    assert not onednn_gelu.onednn_gelu_applies(x16)
    assert not onednn_attention.onednn_attention_applies(q, q, q.astype(jnp.bfloat16))
    assert not onednn_layer_norm.onednn_layer_norm_applies(x16, w16[0, 0, 0], w16[0, 0, 0])

