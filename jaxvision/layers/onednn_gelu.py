"""GELU on the CPU through oneDNN's eltwise primitive, the kernel behind PyTorch's CPU nn.GELU.

XLA:CPU (jaxlib 0.10) expands the exact GELU's erf into a polynomial with selects, forward and
again for the derivative; in a ViT-S/16 training step (the MLPs' (N, 197, 1536) activations) that
took about twice the thread time of PyTorch's GELU. This module computes y = x Phi(x) and its
derivative as XLA FFI custom calls (``csrc/onednn_gelu.cc``): oneDNN's ``eltwise_gelu_erf``
(exact) and ``eltwise_gelu_tanh`` (the tanh approximation, ``jax.nn.gelu``'s default formula),
forward and backward.

**When it is used** (``onednn_gelu_applies``): by ``jaxvision.layers.transformer.gelu_exact`` /
``gelu_tanh`` (the transformer MLPs' activations) when ``lowering.conv_impl() == 'onednn'`` (the
CPU default), x float32 or bfloat16 with no zero dimension, one device, handlers loaded. bf16 is
computed in float32 inside oneDNN and rounded once. Where it differs from ``jax.nn.gelu``: the
exact form of +inf is NaN, and of x >= ~1.7e38 (float32's top 1%) inf instead of x, as oneDNN
computes x (1 + erf) / 2 (activations that large mean training has already diverged). First
derivatives run on the handlers; higher
ones are JAX's autodiff of ``jax.nn.gelu`` (``onednn_build.with_reference_derivatives``). No
forward-mode autodiff (``jax.jvp``/``jacfwd``/``hessian`` stop with JAX's "can't apply
forward-mode autodiff (jvp) to a custom_vjp function"): trace under
``jaxvision.layers.using_conv_impl('xla')`` for those, as ``jaxvision.export`` does. Built by ``jaxvision.layers.onednn_build`` like the other oneDNN ops;
``JAXVISION_ONEDNN=0`` switches it off.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from jaxvision.layers import onednn_build

__all__ = ["onednn_gelu", "onednn_gelu_applies", "available", "why_unavailable"]

NAME = "onednn_gelu"
TARGETS = {"forward": "JvGeluForward", "backward": "JvGeluBackward"}
DTYPES = onednn_build.DTYPES

_load, available, why_unavailable = onednn_build.handler_functions(
    NAME, TARGETS, "GELU uses XLA's elementwise code")


def onednn_gelu_applies(x) -> bool:
    """Whether ``onednn_gelu(x)`` takes x: float32 or bfloat16 with no zero dimension, the CPU
    backend, one device and the handlers loaded."""
    return onednn_build.takes_dtype(x) and x.size > 0 and onednn_build.usable_here(_load)


def onednn_gelu(x, approximate: bool = False):
    """GELU(x) = x Phi(x) (``approximate=False``: the exact erf form of PyTorch's nn.GELU() and
    timm; True: the tanh approximation, ``jax.nn.gelu``'s default) of x, any shape, float32 or
    bfloat16 -> x's shape and dtype. Differentiable (reverse mode, any order).

    Raises ValueError for other dtypes and RuntimeError when the handlers are unavailable
    (``why_unavailable()``); ``onednn_gelu_applies`` tests both, and the device count, which this
    function does not: called with several devices it runs on one (inputs gathered), as a
    custom call does."""
    if not onednn_build.takes_dtype(x):
        raise ValueError(f"onednn_gelu takes float32 or bfloat16, got {x.dtype}")
    if not _load():
        raise RuntimeError(f"oneDNN GELU unavailable: {why_unavailable()}")
    return _gelus[bool(approximate)](x)


def _handler(which, approximate, *args):
    out = jax.ShapeDtypeStruct(args[0].shape, args[0].dtype)
    return jax.ffi.ffi_call(f"jaxvision_{NAME}_{which}", out, vmap_method="sequential")(
        *args, approximate=np.int64(approximate))


def _make(approximate: bool):
    """GELU of one form: forward on the handler, its custom VJP's backward on the handler too,
    that backward's own derivatives from jax.nn.gelu's autodiff."""
    def reference_grad(x, dy):
        return jax.vjp(functools.partial(jax.nn.gelu, approximate=approximate), x)[1](dy)[0]

    grad = onednn_build.with_reference_derivatives(
        functools.partial(_handler, "backward", approximate), reference_grad)

    @jax.custom_vjp
    def gelu(x):
        return _handler("forward", approximate, x)

    gelu.defvjp(lambda x: (gelu(x), x), lambda x, dy: (grad(x, dy.astype(x.dtype)),))
    return gelu


_gelus = {False: _make(False), True: _make(True)}
