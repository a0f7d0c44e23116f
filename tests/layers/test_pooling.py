"""Pooling against tf.nn pooling ("SAME") and numpy references (PyTorch padding, ceil_mode,
adaptive average pooling)."""

import math

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.layers import adaptive_avg_pool, avg_pool, global_avg_pool, global_max_pool, max_pool


@pytest.fixture(scope="module")
def tf():
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    return tf


def _x(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("size", [7, 8])
@pytest.mark.parametrize("window,stride", [(2, 2), (3, 2), (3, 1), (3, 3)])
def test_max_pool_same_matches_tf(tf, size, window, stride):
    x = _x((2, size, size + 1, 3))
    ref = tf.nn.max_pool2d(x, window, stride, "SAME").numpy()
    chex.assert_trees_all_close(max_pool(jnp.asarray(x), window, stride, "SAME"), ref)


@pytest.mark.parametrize("size", [7, 8])
@pytest.mark.parametrize("window,stride", [(3, 2), (2, 1)])
def test_avg_pool_same_matches_tf(tf, size, window, stride):
    # TF's SAME average excludes the padding from the divisor.
    x = _x((1, size, size, 2), 1)
    ref = tf.nn.avg_pool2d(x, window, stride, "SAME").numpy()
    chex.assert_trees_all_close(avg_pool(jnp.asarray(x), window, stride, "SAME"), ref, atol=1e-6)


def np_max_pool_torch(x, k, s, p, ceil_mode):
    n, h, w, c = x.shape

    def out_size(size):
        o = (math.ceil if ceil_mode else math.floor)((size + 2 * p - k) / s) + 1
        if ceil_mode and (o - 1) * s >= size + p:
            o -= 1
        return o

    oh, ow = out_size(h), out_size(w)
    xp = np.full((n, h + 2 * p + k, w + 2 * p + k, c), -np.inf, np.float32)
    xp[:, p : p + h, p : p + w] = x
    out = np.empty((n, oh, ow, c), np.float32)
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = xp[:, i * s : i * s + k, j * s : j * s + k].max((1, 2))
    return out


@pytest.mark.parametrize("size", [7, 8, 14])
@pytest.mark.parametrize(
    "k,s,p,ceil_mode", [(3, 2, 1, False), (3, 2, 0, True), (2, 2, 0, True), (3, 1, 1, True)]
)
def test_max_pool_torch_padding_and_ceil_mode(size, k, s, p, ceil_mode):
    x = _x((2, size, size, 3), 2)
    ref = np_max_pool_torch(x, k, s, p, ceil_mode)
    got = max_pool(jnp.asarray(x), k, s, padding=p, ceil_mode=ceil_mode)
    chex.assert_trees_all_close(got, ref)


def test_avg_pool_symmetric_counts_padding_like_torch():
    x = np.ones((1, 4, 4, 1), np.float32)
    y = np.asarray(avg_pool(jnp.asarray(x), 3, 1, padding=1))
    assert y[0, 0, 0, 0] == pytest.approx(4 / 9)  # corner: 4 real pixels over a 9-tap window
    assert y[0, 1, 1, 0] == pytest.approx(1.0)


def test_global_pools():
    x = _x((2, 5, 6, 4), 3)
    chex.assert_trees_all_close(global_avg_pool(jnp.asarray(x)), x.mean((1, 2)), atol=1e-6)
    chex.assert_trees_all_close(global_max_pool(jnp.asarray(x)), x.max((1, 2)))
    chex.assert_shape(global_avg_pool(jnp.asarray(x), keepdims=True), (2, 1, 1, 4))
    assert global_avg_pool(jnp.asarray(x, jnp.bfloat16)).dtype == jnp.bfloat16


@pytest.mark.parametrize("size,out", [(13, 6), (6, 6), (1, 7), (5, 7), (9, 4)])
def test_adaptive_avg_pool_matches_torch_bins(size, out):
    x = _x((2, size, size + 2, 3), 4)
    h, w = x.shape[1:3]
    ref = np.empty((2, out, out, 3), np.float32)
    for i in range(out):
        for j in range(out):
            h0, h1 = (i * h) // out, math.ceil((i + 1) * h / out)
            w0, w1 = (j * w) // out, math.ceil((j + 1) * w / out)
            ref[:, i, j] = x[:, h0:h1, w0:w1].mean((1, 2))
    chex.assert_trees_all_close(adaptive_avg_pool(jnp.asarray(x), out), ref, atol=1e-5)


def test_pool_errors():
    with pytest.raises(ValueError, match="NHWC"):
        max_pool(jnp.ones((4, 4, 3)), 2)
    with pytest.raises(ValueError, match="ceil_mode"):
        max_pool(jnp.ones((1, 4, 4, 3)), 2, padding="SAME", ceil_mode=True)


@pytest.mark.parametrize("window,shape", [((2, 2), (2, 9, 8, 3)), ((3, 3), (1, 9, 10, 2)),
                                          ((2, 3), (2, 7, 9, 1))])
def test_tiled_max_pool_matches_xla_values_and_ties(window, shape):
    # Small integers make ties frequent: the gradient must go to the first maximum of each tile
    # (row-major), as XLA's select-and-scatter sends it; rows/columns past the last whole tile
    # (odd sizes) get none.
    import flax.linen as nn
    import jax

    from jaxvision.layers import tiled_max_pool

    x = jnp.asarray(np.random.default_rng(0).integers(0, 3, size=shape), jnp.float32)
    y_ref, vjp_ref = jax.vjp(lambda a: nn.max_pool(a, window, window, "VALID"), x)
    y, vjp = jax.vjp(lambda a: tiled_max_pool(a, window), x)
    np.testing.assert_array_equal(y, y_ref)
    dy = jnp.asarray(np.random.default_rng(1).normal(size=y.shape), jnp.float32)
    np.testing.assert_array_equal(vjp(dy)[0], vjp_ref(dy)[0])
    # numpy's own reading of "first maximum": one nonzero per tile, at argmax's place
    g = np.asarray(vjp(dy)[0])
    kh, kw = window
    tile = g[0, :kh, :kw, 0]
    assert np.count_nonzero(tile) == 1 and tile.ravel().argmax() == np.asarray(x)[0, :kh, :kw, 0].ravel().argmax() \
        or float(dy[0, 0, 0, 0]) == 0


def test_max_pool_uses_tiles_on_cpu_only_when_they_tile():
    import jax

    from jaxvision.layers import set_conv_impl

    def jaxpr(**kw):
        return str(jax.make_jaxpr(lambda a: max_pool(a, **kw))(jnp.ones((1, 8, 8, 2))))

    set_conv_impl("cpu")
    try:
        assert "custom_vjp_call" in jaxpr(window=2)
        assert "custom_vjp_call" not in jaxpr(window=3, strides=2)  # overlapping: XLA's
        assert "custom_vjp_call" not in jaxpr(window=2, padding="SAME")  # padded: XLA's
        set_conv_impl("xla")
        assert "custom_vjp_call" not in jaxpr(window=2)
    finally:
        set_conv_impl(None)


def test_tiled_max_pool_second_order_matches_xla():
    # jvp of the gradient (Hessian-vector products) must differentiate the backward pass.
    import flax.linen as nn
    import jax

    from jaxvision.layers import tiled_max_pool

    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 6, 6, 2)), jnp.float32)
    v = jnp.asarray(np.random.default_rng(4).normal(size=x.shape), jnp.float32)

    def hvp(pool):
        return jax.jvp(jax.grad(lambda a: jnp.sum(pool(a) ** 3)), (x,), (v,))[1]

    np.testing.assert_allclose(hvp(lambda a: tiled_max_pool(a, (2, 2))),
                               hvp(lambda a: nn.max_pool(a, (2, 2), (2, 2))), rtol=1e-6)
