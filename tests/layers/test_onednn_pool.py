"""jaxvision.layers.onednn_pool (oneDNN's pooling as XLA FFI custom calls) gives what flax's (XLA's
reduce-window) pooling gives: values and gradients of max and average pooling over windows,
strides, paddings, ceil_mode, odd sizes, ties and dtypes; it is used where it applies and only
there, and is safe from several threads."""

import concurrent.futures
import importlib
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.layers import using_conv_impl
from jaxvision.layers.pooling import avg_pool, max_pool
from tests.layers.onednn_testing import jaxpr_text, needs_onednn, one_device, several_devices  # noqa: F401

op = importlib.import_module("jaxvision.layers.onednn_pool")  # the module, not the function


# Every test traces the one-device programs CPU users run (tests/layers/onednn_testing).
pytestmark = [needs_onednn, pytest.mark.usefixtures("one_device")]


_ops = jaxpr_text


def _value_and_vjp(pool, impl, x, c):
    """pool(x) and its VJP with cotangent c, traced under ``impl``; asserts oneDNN ran when
    impl is 'onednn' (else the comparison would be XLA against itself)."""
    with using_conv_impl(impl):
        assert ("ffi_call" in _ops(pool, x)) == (impl == "onednn")
        y, vjp = jax.vjp(pool, x)
        return y, vjp(c)[0]


def test_builds_and_registers_here():
    assert op.available(), op.why_unavailable()
    assert op.why_unavailable() is None


# (window, stride, padding, ceil_mode, (H, W)): ResNet's stem, GoogLeNet's ceil_mode pools, TF's
# asymmetric SAME on even sizes, odd sizes, stride 1 (maximal overlap).
GEOMETRIES = [
    (3, 2, 1, False, (12, 12)),  # ResNet stem (PyTorch padding 1)
    (3, 2, "SAME", False, (10, 11)),  # TF SAME, asymmetric pads on the even side
    (3, 1, 1, True, (7, 9)),  # GoogLeNet's branch pool, ceil_mode
    (3, 2, 0, True, (13, 10)),  # GoogLeNet's downsampling, ceil_mode adds a bottom/right pad
    (2, 1, "SAME", False, (5, 6)),  # 2x2 stride 1
    (2, 2, [(1, 0), (0, 1)], False, (9, 7)),  # padded non-overlapping
    (2, 1, 0, True, (6, 5)),
    (3, 2, "VALID", False, (10, 11)),  # drops the last row
    (2, 2, "VALID", False, (9, 8)),  # VGG's / LeNet's 2x2 tiles, odd size
    (3, 3, "VALID", False, (10, 11)),  # non-overlapping, drops the last row/column
]


def _inputs(shape, dtype, ties, seed):
    rng = np.random.default_rng(seed)
    if ties:  # few distinct values: many windows hold their maximum more than once
        x = rng.integers(-1, 2, size=shape).astype(np.float32)
    else:
        x = rng.normal(size=shape)
    return jnp.asarray(x, dtype)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("window,stride,padding,ceil_mode,hw", GEOMETRIES)
def test_max_pool_matches_xla(window, stride, padding, ceil_mode, hw, ties, dtype):
    x = _inputs((2, *hw, 5), dtype, ties, seed=window * 10 + stride)

    def pool(x):
        return max_pool(x, window, stride, padding=padding, ceil_mode=ceil_mode)

    with using_conv_impl("xla"):
        y_shape = pool(x).shape
    # Small integers: every sum of cotangents is exact in bf16 too, so the gradients must be
    # identical, which they are only if both send each window's gradient to the same maximum.
    c = jnp.asarray(np.random.default_rng(1).integers(-4, 5, size=y_shape), dtype)
    y, dx = _value_and_vjp(pool, "onednn", x, c)
    y_ref, dx_ref = _value_and_vjp(pool, "xla", x, c)
    assert y.dtype == dtype and dx.dtype == dtype
    np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(y_ref, np.float32))
    np.testing.assert_array_equal(np.asarray(dx, np.float32), np.asarray(dx_ref, np.float32))


def test_ties_go_to_the_first_maximum():
    # All-equal windows (ReLU's zeros): each window's gradient goes to its first element in
    # row-major order, as XLA's select-and-scatter and PyTorch send it.
    x = jnp.zeros((1, 3, 3, 1))
    c = jnp.arange(1.0, 5.0).reshape(1, 2, 2, 1)  # 2x2 windows, stride 1
    want = np.array([[1, 2, 0], [3, 4, 0], [0, 0, 0]], np.float32)
    for impl in ("onednn", "xla"):
        _, dx = _value_and_vjp(lambda x: max_pool(x, 2, 1), impl, x, c)
        np.testing.assert_array_equal(dx[0, :, :, 0], want)
    # Padding never wins, even against the most negative finite values.
    x = jnp.full((1, 2, 2, 1), -3e38)
    y, dx = _value_and_vjp(lambda x: max_pool(x, 3, 2, padding=1), "onednn", x,
                           jnp.ones((1, 1, 1, 1)))
    assert y[0, 0, 0, 0] == np.float32(-3e38)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[1, 0], [0, 0]])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_nan_and_minus_inf_values_as_xla(dtype):
    # oneDNN skips NaN and starts float32 windows at -FLT_MAX; the handler redoes such inputs
    # with XLA's semantics: a window holding NaN gives NaN, a window of -inf gives -inf.
    x = np.arange(2 * 7 * 6 * 3, dtype=np.float32).reshape(2, 7, 6, 3)
    x[0, 2, 3, 1] = np.nan
    x[1, :4, :4, :] = -np.inf
    x = jnp.asarray(x, dtype)
    for window, stride in [(3, 2), (2, 1)]:
        def pool(x, window=window, stride=stride):
            return max_pool(x, window, stride, padding=1)

        with using_conv_impl("onednn"):
            assert "ffi_call" in _ops(pool, x)
            got = [pool(x), jax.vjp(pool, x)[0]]  # inference and training forwards
        with using_conv_impl("xla"):
            want = np.asarray(pool(x), np.float32)
        assert np.isnan(want).any() and np.isneginf(want).any()
        for y in got:
            np.testing.assert_array_equal(np.asarray(y, np.float32), want)


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-6), (jnp.bfloat16, 1e-2)])
@pytest.mark.parametrize("window,stride,padding,count_include_pad,hw", [
    (3, 1, 1, True, (7, 8)),  # EfficientFormer's token mixer (PyTorch padding)
    (3, 1, 1, False, (7, 8)),  # the same without the pads in the count
    (2, 2, "VALID", None, (9, 8)),  # DenseNet's transition, odd size
    (3, 2, "SAME", None, (10, 11)),  # TF: averages over real pixels only
    (3, 2, "SAME", True, (10, 11)),
    (2, 1, [(1, 0), (0, 1)], None, (5, 6)),
])
def test_avg_pool_matches_xla(window, stride, padding, count_include_pad, hw, dtype, tol):
    x = _inputs((2, *hw, 4), dtype, False, seed=window + stride)

    def pool(x):
        return avg_pool(x, window, stride, padding=padding, count_include_pad=count_include_pad)

    with using_conv_impl("xla"):
        y_shape = pool(x).shape
    c = jnp.asarray(np.random.default_rng(2).normal(size=y_shape), dtype)
    y, dx = _value_and_vjp(pool, "onednn", x, c)
    # The reference in float32: oneDNN sums bf16 in float32, XLA's bf16 reduce-window in bf16.
    y_ref, dx_ref = _value_and_vjp(pool, "xla", x.astype(jnp.float32), c.astype(jnp.float32))
    assert y.dtype == dtype and dx.dtype == dtype
    np.testing.assert_allclose(np.asarray(y, np.float32), y_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(np.asarray(dx, np.float32), dx_ref, rtol=tol, atol=tol)


def test_xla_avg_pool_keeps_bf16():
    # flax divides by a float32 count without count_include_pad: the fallback casts back.
    x = jnp.ones((1, 4, 4, 2), jnp.bfloat16)
    with using_conv_impl("xla"):
        assert avg_pool(x, 3, 2, padding="SAME").dtype == jnp.bfloat16


def test_used_where_it_applies_only(monkeypatch):
    x = jnp.ones((2, 8, 8, 4))
    stem = lambda x: max_pool(x, 3, 2, padding=1)  # noqa: E731
    with using_conv_impl("onednn"):
        assert "ffi_call" in _ops(stem, x)
        assert "ffi_call" in _ops(stem, x.astype(jnp.bfloat16))
        assert "ffi_call" in _ops(lambda x: avg_pool(x, 3, 1, padding=1), x)
        assert "ffi_call" not in _ops(stem, x.astype(jnp.float16))  # not a oneDNN dtype here
        # Pads as wide as the window: windows wholly in the padding (XLA: -inf) stay XLA's.
        assert "ffi_call" not in _ops(lambda x: max_pool(x, 2, 1, padding=2), x)
        # Non-overlapping unpadded windows too (faster than tiled_max_pool there).
        assert "ffi_call" in _ops(lambda x: max_pool(x, 2), x)
        assert "ffi_call" not in _ops(lambda x: max_pool(x, 2), x.astype(jnp.float16))
    for impl in ("xla", "cpu"):
        with using_conv_impl(impl):
            assert "ffi_call" not in _ops(stem, x)
    assert not op.onednn_pool_applies(x[:, :2], (3, 3), (2, 2), ((0, 0), (0, 0)))  # empty out
    several_devices(monkeypatch)
    assert not op.onednn_pool_applies(x, (3, 3), (2, 2), ((1, 1), (1, 1)))


@pytest.mark.parametrize("pool", [
    lambda x: max_pool(x, 3, 2, padding=1),
    lambda x: max_pool(x, 2, 1, padding="SAME"),
    lambda x: avg_pool(x, 3, 1, padding=1, count_include_pad=False),
])
def test_second_order_reverse_mode(pool):
    # Hessian-vector products (reverse over reverse): the backward passes have VJPs too.
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(2, 7, 8, 3)), jnp.float32)
    v = jnp.asarray(rng.normal(size=x.shape), jnp.float32)

    def hvp(impl):
        with using_conv_impl(impl):
            f = lambda x: jnp.sum(jnp.tanh(pool(x)) * jnp.arange(pool(x).size).reshape(  # noqa: E731
                pool(x).shape))
            assert ("ffi_call" in _ops(jax.grad(f), x)) == (impl == "onednn")
            return jax.grad(lambda x: jnp.vdot(jax.grad(f)(x), v))(x)

    np.testing.assert_allclose(hvp("onednn"), hvp("xla"), rtol=1e-5, atol=1e-4)


def test_under_vmap_and_jit():
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=(3, 2, 9, 9, 4)), jnp.float32)
    stem = lambda x: jnp.sum(max_pool(x, 3, 2, padding=1) ** 2)  # noqa: E731
    with using_conv_impl("onednn"):
        got = jax.jit(jax.vmap(jax.grad(stem)))(x)
    with using_conv_impl("xla"):
        want = jax.vmap(jax.grad(stem))(x)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_concurrent_calls_from_threads_are_correct():
    # One compiled program run from several threads at once: each execution has its own
    # scratchpad and workspace.
    rng = np.random.default_rng(7)
    xs = [jnp.asarray(rng.normal(size=(4, 16, 16, 8)), jnp.bfloat16) for _ in range(4)]

    def loss(x):
        return jnp.sum(max_pool(x, 3, 2, padding=1).astype(jnp.float32) ** 2)

    with using_conv_impl("onednn"):
        f = jax.jit(jax.value_and_grad(loss))
        assert "ffi_call" in _ops(f, xs[0])
    with using_conv_impl("xla"):
        want = [jax.value_and_grad(loss)(x) for x in xs]

    def run(i):
        bad = 0
        for _ in range(40):
            v, g = f(xs[i])
            bad += not (np.allclose(v, want[i][0], rtol=1e-5)
                        and np.array_equal(np.asarray(g, np.float32),
                                           np.asarray(want[i][1], np.float32)))
        return bad

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(run, range(4))) == 0


def test_switched_off_falls_back():
    code = (
        "import importlib, jax.numpy as jnp, numpy as np\n"
        "m = importlib.import_module('jaxvision.layers.onednn_pool')\n"
        "from jaxvision.layers.pooling import max_pool\n"
        "print(m.available(), '|', m.why_unavailable())\n"
        "x = jnp.arange(2 * 7 * 7 * 3.0).reshape(2, 7, 7, 3)\n"
        "assert float(max_pool(x, 3, 2, padding=1)[1, 3, 3, 2]) == float(x[1, 6, 6, 2])\n"
    )
    env = dict(os.environ, JAXVISION_ONEDNN="0", JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)  # one device, where oneDNN would otherwise be used
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False | switched off by JAXVISION_ONEDNN"


def test_unknown_kind_refused():
    with pytest.raises(ValueError, match="unknown pooling kind 'min'"):
        op.onednn_pool(jnp.ones((1, 4, 4, 1)), (2, 2), (1, 1), ((0, 0), (0, 0)), "min")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("window, hw", [((16, 16), (16, 16)), ((16, 16), (32, 32)),
                                        ((1, 256), (1, 256)), ((2, 128), (2, 130)),
                                        ((15, 17), (16, 18))])
def test_windows_of_256_positions_or_more_take_xla(window, hw, dtype):
    # oneDNN 3.2's bf16 max-pooling backward with its int32 workspace (windows of >= 256
    # positions) lost half the gradient: such windows go to XLA's reduce_window; 255 stay oneDNN's.
    x = jnp.asarray(np.random.default_rng(5).normal(size=(1, *hw, 4)), dtype)
    pool = lambda x: max_pool(x, window, 1)  # noqa: E731
    with using_conv_impl("onednn"):
        assert ("ffi_call" in _ops(pool, x)) == (window[0] * window[1] <= 255)
        y, vjp = jax.vjp(pool, x)
        (dx,) = vjp(jnp.ones_like(y))
    with using_conv_impl("xla"):
        y_ref, vjp_ref = jax.vjp(pool, x)
        (dx_ref,) = vjp_ref(jnp.ones_like(y_ref))
    np.testing.assert_array_equal(np.asarray(y, np.float32), np.asarray(y_ref, np.float32))
    np.testing.assert_array_equal(np.asarray(dx, np.float32), np.asarray(dx_ref, np.float32))
    assert float(jnp.sum(dx.astype(jnp.float32))) == y.size  # every output's gradient lands
