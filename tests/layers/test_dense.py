"""f32_accumulating_dot_general: bf16 operands, float32 accumulation forward and backward."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.layers.dense import f32_accumulating_dot_general


def _dense(dtype):
    return nn.DenseGeneral(features=(2, 3), dtype=dtype, dot_general=f32_accumulating_dot_general)


def test_forward_and_gradients_match_float64_reference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 5, 8)).astype(np.float32)
    layer = _dense(jnp.bfloat16)
    params = layer.init(jax.random.key(0), x)
    y = layer.apply(params, x)
    assert y.dtype == jnp.bfloat16 and y.shape == (4, 5, 2, 3)
    k = np.asarray(params["params"]["kernel"], np.float64)
    xb = np.asarray(jnp.asarray(x, jnp.bfloat16), np.float64)  # the bf16-rounded operands
    kb = np.asarray(jnp.asarray(k, jnp.bfloat16), np.float64)
    ref = np.einsum("nti,ihd->nthd", xb, kb)
    np.testing.assert_allclose(np.asarray(y, np.float64), ref, rtol=1e-2, atol=1e-2)

    # gradients of sum(y * w) with respect to x and the kernel, against float64 by hand
    w = rng.normal(size=(4, 5, 2, 3)).astype(np.float32)

    def loss(p, x):
        return jnp.sum(layer.apply(p, x).astype(jnp.float32) * w)

    gp, gx = jax.grad(loss, argnums=(0, 1))(params, x)
    wb = np.asarray(jnp.asarray(w, jnp.bfloat16), np.float64)
    np.testing.assert_allclose(np.asarray(gx, np.float64), np.einsum("nthd,ihd->nti", wb, kb),
                               rtol=2e-2, atol=2e-2)
    np.testing.assert_allclose(np.asarray(gp["params"]["kernel"], np.float64),
                               np.einsum("nti,nthd->ihd", xb, wb), rtol=2e-2, atol=5e-2)


def test_every_bf16_dot_accumulates_in_float32():
    x = jnp.ones((2, 8), jnp.bfloat16)
    k = jnp.ones((8, 4), jnp.bfloat16)

    def f(x, k):
        dims = (((1,), (0,)), ((), ()))
        return jnp.sum(f32_accumulating_dot_general(x, k, dims).astype(jnp.float32))

    hlo = jax.jit(jax.value_and_grad(f, argnums=(0, 1))).lower(x, k).as_text()
    dots = [line for line in hlo.splitlines() if "dot_general" in line]
    assert len(dots) == 3  # forward, d/dx, d/dk
    assert all("bf16" in d and "-> tensor<" in d and "xf32>" in d.split("->")[-1] for d in dots)


def test_float32_is_plain_dot_general():
    rng = np.random.default_rng(1)
    x, k = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(4, 2)).astype(np.float32)
    dims = (((1,), (0,)), ((), ()))
    np.testing.assert_array_equal(f32_accumulating_dot_general(x, k, dims),
                                  jax.lax.dot_general(x, k, dims))
