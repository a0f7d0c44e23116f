"""Scaled dot-product attention on the CPU through oneDNN's batched matmul and softmax.

XLA:CPU (jaxlib 0.10) computes softmax(q k^T / sqrt(d)) v of a ViT as head transposes, two
batched dots and row reductions, each a separate pass; in a ViT-S/16 training step that core took
about a fifth of the thread time, three times the share of PyTorch's fused CPU attention. This
module runs the whole core, forward and backward, as two XLA FFI custom calls
(``csrc/onednn_attention.cc``): the four products per direction are oneDNN matmuls reading q, k,
v and the output cotangent in their (N, T, H, D) layout through strides (no transposes), softmax
and its derivative are oneDNN's softmax primitive in place.

Numerics match ``jaxvision.layers.attention``: the probabilities are float32; bf16 inputs
multiply bf16 x bf16 with float32 accumulation, the probabilities and their cotangent rounded to
bf16 once before each product (``float32_accumulating_attention``'s scheme) -- on CPUs where
oneDNN's bf16 products are the faster form (``onednn_bf16.choice() == 'native'``). Elsewhere bf16
inputs are widened and the core runs in float32 (probabilities and their cotangent unrounded), the
output and gradients rounded once to bf16: measured on a 2-core Xeon without AMX, a ViT-S/16 bf16
training step 4.60 -> 5.18 img/s. The residuals are
the inputs and the float32 probabilities (N, H, T, T) (plus their bf16 copy for bf16), as in
autodiff of the reference form.

**When it is used** (``onednn_attention_applies``): ``dot_product_attention(implementation=
'auto')`` on the CPU backend with ``lowering.conv_impl() == 'onednn'`` (the CPU default), no mask
and no attention dropout, q/k/v float32 or bfloat16 of one shape (N, T, H, D) (self-attention:
as many keys as queries), one device, handlers loaded. It has a custom VJP: first derivatives
run on the handlers; higher ones (a gradient penalty differentiating the backward pass) are the
autodiff of the same computation written in JAX (``onednn_build.with_reference_derivatives``).
No forward-mode autodiff (``jax.jvp``/``jacfwd``/``hessian`` stop with JAX's "can't apply
forward-mode autodiff (jvp) to a custom_vjp function"): trace under
``jaxvision.layers.using_conv_impl('xla')`` for those, as ``jaxvision.export`` does. Built by ``jaxvision.layers.onednn_build`` like the other oneDNN
ops; ``JAXVISION_ONEDNN=0`` switches it off.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxvision.layers import onednn_bf16, onednn_build

__all__ = ["onednn_attention", "onednn_attention_applies", "available", "why_unavailable"]

NAME = "onednn_attention"
TARGETS = {"forward": "JvAttentionForward", "backward": "JvAttentionBackward"}
DTYPES = onednn_build.DTYPES

_load, available, why_unavailable = onednn_build.handler_functions(
    NAME, TARGETS, "attention uses XLA's dots and softmax")


def onednn_attention_applies(q, k, v, mask=None) -> bool:
    """Whether ``onednn_attention(q, k, v)`` takes these operands: no mask, q, k, v of one shape
    (N, T, H, D) with no zero dimension and one dtype, float32 or bfloat16, the CPU backend, one
    device and the handlers loaded."""
    return (mask is None and q.ndim == 4 and q.shape == k.shape == v.shape
            and onednn_build.takes_dtype(q, k, v) and q.size > 0
            and onednn_build.usable_here(_load))


def onednn_attention(q, k, v):
    """softmax(q k^T / sqrt(D)) v over each head, q, k, v (N, T, H, D) float32 or bfloat16 ->
    (N, T, H, D) in their dtype; softmax in float32. Differentiable in q, k and v (reverse mode,
    any order).

    Raises ValueError for operands it does not take and RuntimeError when the handlers are
    unavailable (``why_unavailable()``); ``onednn_attention_applies`` tests both, and the device
    count, which this function does not: called with several devices it runs on one (inputs
    gathered), as a custom call does."""
    if not (q.ndim == 4 and q.shape == k.shape == v.shape
            and onednn_build.takes_dtype(q, k, v)):
        raise ValueError(f"onednn_attention takes q, k, v of one shape (N, T, H, D) and one "
                         f"dtype (float32 or bfloat16), got {q.shape} {q.dtype}, {k.shape} "
                         f"{k.dtype}, {v.shape} {v.dtype}")
    if not _load():
        raise RuntimeError(f"oneDNN attention unavailable: {why_unavailable()}")
    wide = onednn_bf16.compute_dtype(q.dtype)
    if wide != q.dtype:  # bf16 where this CPU multiplies float32 faster (``onednn_bf16``)
        return _attention(q.astype(wide), k.astype(wide), v.astype(wide)).astype(q.dtype)
    return _attention(q, k, v)


def _scores(q, dtype, wanted=True):
    """The (N, H, T, T) probability buffer's type; a 0-element one where the handler ignores it
    (the bf16 copies of float32 attention)."""
    n, t, h, _ = q.shape
    return jax.ShapeDtypeStruct((n, h, t, t) if wanted else (0,), dtype)


def _low(q) -> bool:
    return q.dtype != jnp.float32


def _forward_handler(q, k, v):
    """(o, p, p_low): the output, the float32 probabilities (N, H, T, T) and their bf16 copy
    (0-element for float32)."""
    return jax.ffi.ffi_call(
        f"jaxvision_{NAME}_forward",
        (jax.ShapeDtypeStruct(q.shape, q.dtype), _scores(q, jnp.float32),
         _scores(q, q.dtype, _low(q))),
        vmap_method="sequential")(q, k, v)


def _forward_reference(q, k, v):
    """``_forward_handler`` in pure JAX (its derivatives are the handler's)."""
    f32 = jnp.float32
    s = jnp.einsum("nqhd,nkhd->nhqk", q, k, preferred_element_type=f32) / jnp.sqrt(
        jnp.asarray(q.shape[-1], f32))
    p = jax.nn.softmax(s, axis=-1)
    p_low = p.astype(q.dtype) if _low(q) else jnp.zeros((0,), q.dtype)
    o = jnp.einsum("nhqk,nkhd->nqhd", p.astype(q.dtype), v, preferred_element_type=f32)
    return o.astype(q.dtype), p, p_low


def _backward_handler(q, k, v, p, p_low, do):
    grad = jax.ShapeDtypeStruct(q.shape, q.dtype)
    dq, dk, dv, _, _ = jax.ffi.ffi_call(
        f"jaxvision_{NAME}_backward",
        (grad, grad, grad, _scores(q, jnp.float32), _scores(q, q.dtype, _low(q))),
        vmap_method="sequential")(q, k, v, p, p_low, do)
    return dq, dk, dv


def _backward_reference(q, k, v, p, p_low, do):
    """``_backward_handler`` in pure JAX, as a function of all six operands."""
    f32 = jnp.float32
    pl = p_low if _low(q) else p
    dv = jnp.einsum("nhqk,nqhd->nkhd", pl, do, preferred_element_type=f32)
    dp = jnp.einsum("nqhd,nkhd->nhqk", do, v, preferred_element_type=f32)
    ds = p * (dp - jnp.sum(p * dp, axis=-1, keepdims=True))
    ds = (ds / jnp.sqrt(jnp.asarray(q.shape[-1], f32))).astype(q.dtype)
    dq = jnp.einsum("nhqk,nkhd->nqhd", ds, k, preferred_element_type=f32)
    dk = jnp.einsum("nhqk,nqhd->nkhd", ds, q, preferred_element_type=f32)
    return dq.astype(q.dtype), dk.astype(q.dtype), dv.astype(q.dtype)


_forward = onednn_build.with_reference_derivatives(_forward_handler, _forward_reference)
_backward = onednn_build.with_reference_derivatives(_backward_handler, _backward_reference)


@jax.custom_vjp
def _attention(q, k, v):
    return _forward(q, k, v)[0]


def _attention_fwd(q, k, v):
    o, p, p_low = _forward(q, k, v)
    return o, (q, k, v, p, p_low)


def _attention_bwd(res, do):
    return _backward(*res, do.astype(res[0].dtype))


_attention.defvjp(_attention_fwd, _attention_bwd)
