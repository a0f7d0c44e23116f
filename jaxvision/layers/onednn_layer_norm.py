"""Layer normalization on the CPU through oneDNN's layer_normalization primitive.

XLA:CPU (jaxlib 0.10) computes Flax's ``nn.LayerNorm`` as several fused passes each way (the
moments, the normalization, and in the backward pass the row sums of dy and dy * x_hat); in a
ViT-S/16 float32 training step its 25 LayerNorms took about 200 ms of thread time where
PyTorch's ``native_layer_norm`` took 55 ms (``experiments/onednn_study/README.md`` section 7).
This module computes y = (x - mean) / sqrt(var + epsilon) * scale + shift over the last axis and
its backward pass as XLA FFI custom calls (``csrc/onednn_layer_norm.cc``), one pass each way.

**When it is used** (``onednn_layer_norm_applies``): by ``jaxvision.layers.norm.LayerNorm`` (the
transformer blocks' norms) when ``lowering.conv_impl() == 'onednn'`` (the CPU default), for float32
x (..., C) with float32 scale and shift (C,), no zero dimension, one device, handlers loaded.
bf16 and the other cases keep Flax's code. The variance is the mean of squared deviations, as
oneDNN and PyTorch compute it, and as ``norm.LayerNorm`` has Flax compute it
(``use_fast_variance=False``); Flax's own default, E[x^2] - E[x]^2, loses digits on rows whose
mean is large against their spread, so a LayerNorm asking for it keeps Flax's code. First derivatives run on the handlers; higher ones are JAX's
autodiff of the same formulas (``onednn_build.with_reference_derivatives``). No forward-mode
autodiff: trace under ``jaxvision.layers.using_conv_impl('xla')`` for that, as
``jaxvision.export`` does. Built by ``jaxvision.layers.onednn_build`` like the other oneDNN ops;
``JAXVISION_ONEDNN=0`` switches it off.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxvision.layers import onednn_build

__all__ = ["onednn_layer_norm", "onednn_layer_norm_applies", "available", "why_unavailable"]

NAME = "onednn_layer_norm"
TARGETS = {"forward": "JvLayerNormForward", "backward": "JvLayerNormBackward"}

_load, available, why_unavailable = onednn_build.handler_functions(
    NAME, TARGETS, "LayerNorm uses XLA's reductions")


def _takes(x, scale, shift) -> bool:
    """x float32 (..., C) with no zero dimension, scale and shift float32 (C,): the operands the
    handlers compute (anything with ``shape`` and ``dtype``, e.g. a ShapeDtypeStruct)."""
    if not all(hasattr(a, "shape") and hasattr(a, "dtype") for a in (x, scale, shift)):
        return False
    return (len(x.shape) >= 1 and 0 not in x.shape and x.dtype == jnp.float32
            and all(p.shape == x.shape[-1:] and p.dtype == jnp.float32 for p in (scale, shift)))


def onednn_layer_norm_applies(x, scale, shift) -> bool:
    """Whether ``onednn_layer_norm(x, scale, shift, epsilon)`` takes these: x float32 (..., C)
    with no zero dimension, scale and shift float32 (C,), the CPU backend, one device and the
    handlers loaded."""
    return _takes(x, scale, shift) and onednn_build.usable_here(_load)


def onednn_layer_norm(x, scale, shift, epsilon: float):
    """Layer normalization of x (..., C) over its last axis: (x - mean) / sqrt(var + epsilon) *
    scale + shift, with var the biased variance of each row; x, scale (C,) and shift (C,)
    float32 -> x's shape, float32. Differentiable in all three (reverse mode, any order).

    Raises ValueError for other shapes or dtypes and RuntimeError when the handlers are
    unavailable (``why_unavailable()``); ``onednn_layer_norm_applies`` tests both, and the device
    count, which this function does not."""
    def spec(a):
        return f"{getattr(a, 'shape', a)} {getattr(a, 'dtype', '')}".rstrip()

    if not _takes(x, scale, shift):
        raise ValueError(f"onednn_layer_norm takes float32 x (..., C) and float32 scale and shift "
                         f"(C,), got x {spec(x)}, scale {spec(scale)}, shift {spec(shift)}")
    if not _load():
        raise RuntimeError(f"oneDNN LayerNorm unavailable: {why_unavailable()}")
    return _layer_norm(x, scale, shift, float(epsilon))


def _f32(shape):
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def _forward_handler(epsilon, x, scale, shift):
    rows = x.shape[:-1]
    return tuple(jax.ffi.ffi_call(
        f"jaxvision_{NAME}_forward", (_f32(x.shape), _f32(rows), _f32(rows)),
        vmap_method="sequential")(x, scale, shift, epsilon=np.float32(epsilon)))


def _forward_reference(epsilon, x, scale, shift):
    mean = x.mean(-1)
    var = jnp.square(x - mean[..., None]).mean(-1)
    y = (x - mean[..., None]) * lax.rsqrt(var + epsilon)[..., None] * scale + shift
    return y, mean, var


def _backward_handler(epsilon, x, mean, var, scale, dy):
    return tuple(jax.ffi.ffi_call(
        f"jaxvision_{NAME}_backward", (_f32(x.shape), _f32(scale.shape), _f32(scale.shape)),
        vmap_method="sequential")(x, mean, var, scale, dy, epsilon=np.float32(epsilon)))


def _backward_reference(epsilon, x, mean, var, scale, dy):
    """dx, dscale, dshift of y = x_hat * scale + shift given the forward's mean and var (so that
    derivatives of this backward pass flow into them, and through them into x)."""
    rstd = lax.rsqrt(var + epsilon)[..., None]
    xhat = (x - mean[..., None]) * rstd
    g = dy * scale
    dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    rows = tuple(range(x.ndim - 1))
    return dx, (dy * xhat).sum(rows), dy.sum(rows)


@functools.cache
def _with_epsilon(epsilon: float):
    """The forward and backward functions of one epsilon: handlers for values, the reference
    formulas' autodiff for their derivatives."""
    forward = onednn_build.with_reference_derivatives(
        functools.partial(_forward_handler, epsilon), functools.partial(_forward_reference, epsilon))
    backward = onednn_build.with_reference_derivatives(
        functools.partial(_backward_handler, epsilon),
        functools.partial(_backward_reference, epsilon))
    return forward, backward


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _layer_norm(x, scale, shift, epsilon: float):
    return _with_epsilon(epsilon)[0](x, scale, shift)[0]


def _fwd(x, scale, shift, epsilon):
    y, mean, var = _with_epsilon(epsilon)[0](x, scale, shift)
    return y, (x, mean, var, scale)


def _bwd(epsilon, res, dy):
    x, mean, var, scale = res
    return _with_epsilon(epsilon)[1](x, mean, var, scale, dy.astype(x.dtype))


_layer_norm.defvjp(_fwd, _bwd)
