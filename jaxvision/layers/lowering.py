"""How convolutions reach the hardware: XLA's convolution op, or formulations XLA:CPU runs several
times faster.

On GPUs and TPUs XLA's convolution (cuDNN / the TPU conv units) is the fast path and is kept. On
CPUs (jaxlib 0.10, experiments/xla_cpu_conv) XLA:CPU runs a 1x1 convolution 2-5x slower than the
identical matmul over channels and its weight gradient 5-10x slower, and depthwise convolutions
10-30x slower than the same sum of shifted products (its depthwise weight gradient computes a
dense C x C kernel). The 'cpu' lowering therefore computes

**Depthwise convolutions** (``groups == in_channels``) as a sum over the kh * kw taps of a
strided slice of the padded input times that tap's per-channel weights, accumulated in float32;
XLA fuses the sum into one pass and autodiff gives the backward pass as fused pads and products.

**Patchify convolutions** (kernel == stride, no padding: ViT's patch embedding) as
space-to-depth followed by a pointwise convolution.

**Pointwise (1x1) convolutions** as a matmul with its own VJP:

* forward ``y = x[:, ::s, ::s] @ w`` over the channel axis;
* ``dx = dy @ w.T`` (scattered back to the strided positions for stride > 1);
* ``dw = x.T @ dy`` contracting over N, H, W, written so that XLA transposes the operand with
  fewer channels (``weight_grad``): XLA:CPU materializes the transposed operand of such a product,
  and when that operand is a fused chain (BatchNorm + ReLU + residual adds) the transposed
  recomputation costs up to 10x the product itself; picking the narrow side cut the ResNet-50 step
  from 4.8 s to 3.9 s at batch 16.

bf16/fp16 products accumulate in float32 (the form XLA:CPU runs on the AMX bf16 units; GPUs
accumulate in float32 anyway). The choice is made at trace time: ``conv_impl()`` is 'matmul' on
the CPU backend and 'xla' elsewhere, unless set by ``set_conv_impl`` or the environment variable
``JAXVISION_CONV_IMPL`` (``xla`` | ``cpu`` | ``auto``). Both give the same results up to float
rounding (tests/layers/test_lowering.py).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

__all__ = [
    "conv_impl", "set_conv_impl", "pointwise_conv", "depthwise_conv", "patchify_conv",
    "weight_grad", "matmul",
]

IMPLS = ("auto", "xla", "cpu")
_LOW_PRECISION = (jnp.bfloat16, jnp.float16)
_override: list[str] = []


def set_conv_impl(impl: str | None) -> None:
    """Choose how convolutions are lowered from now on (traced functions keep what they traced
    with): 'auto' ('cpu' on the CPU backend, 'xla' elsewhere), 'xla', 'cpu'; None restores the
    default (``JAXVISION_CONV_IMPL`` or 'auto')."""
    if impl is not None and impl not in IMPLS:
        raise ValueError(f"unknown conv impl {impl!r}: use one of {IMPLS}")
    _override[:] = [impl] if impl else []


def conv_impl() -> str:
    """'xla' or 'cpu': the lowering used for convolutions traced now (see module docstring)."""
    impl = _override[0] if _override else os.environ.get("JAXVISION_CONV_IMPL", "auto")
    if impl not in IMPLS:
        raise ValueError(
            f"JAXVISION_CONV_IMPL={impl!r} is not one of {IMPLS}; unset it or pick one of these"
        )
    if impl == "auto":
        return "cpu" if jax.default_backend() == "cpu" else "xla"
    return impl


def matmul(a: jnp.ndarray, b: jnp.ndarray, dims) -> jnp.ndarray:
    """``lax.dot_general`` in ``a``'s dtype; bf16/fp16 operands accumulate in float32."""
    if a.dtype in _LOW_PRECISION:
        return lax.dot_general(a, b.astype(a.dtype), dims,
                               preferred_element_type=jnp.float32).astype(a.dtype)
    return lax.dot_general(a, b, dims)


def weight_grad(x: jnp.ndarray, g: jnp.ndarray, batch_axes: int) -> jnp.ndarray:
    """``x (B..., K) , g (B..., N) -> (K, N)``: sum over the leading ``batch_axes`` axes of the
    outer products, i.e. the weight gradient of ``x @ w``.

    XLA makes the contracted axis minor by transposing one operand (the left one of the product);
    this puts the one with fewer channels on the left so the transposed copy is the smaller one.
    """
    axes = tuple(range(batch_axes))
    if x.shape[-1] <= g.shape[-1]:
        return matmul(x, g, ((axes, axes), ((), ())))
    return matmul(g, x, ((axes, axes), ((), ()))).T


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def pointwise_conv(x: jnp.ndarray, w: jnp.ndarray, strides: tuple[int, int]) -> jnp.ndarray:
    """1x1 convolution as a matmul: x (N, H, W, C) , w (C, F) -> (N, ceil(H/sh), ceil(W/sw), F)
    in x's dtype (the same as ``lax.conv_general_dilated`` with a (1, 1, C, F) kernel and zero
    padding)."""
    return _pointwise_fwd(x, w, strides)[0]


def _subsample(x: jnp.ndarray, strides: Sequence[int]) -> jnp.ndarray:
    sh, sw = strides
    return x[:, ::sh, ::sw] if (sh, sw) != (1, 1) else x


def _pointwise_fwd(x, w, strides):
    xs = _subsample(x, strides)
    return matmul(xs, w, (((3,), (0,)), ((), ()))), (xs, w, x.shape)


def _pointwise_bwd(strides, res, dy):
    xs, w, x_shape = res
    dy = dy.astype(xs.dtype)
    dxs = matmul(dy, w, (((3,), (1,)), ((), ())))
    dw = weight_grad(xs, dy, 3).astype(w.dtype)
    sh, sw = strides
    if (sh, sw) != (1, 1):
        # Back to the input grid: the skipped positions get zero gradient.
        _, h, wd, _ = x_shape
        ho, wo = dxs.shape[1:3]
        zero = jnp.zeros((), dxs.dtype)
        dxs = lax.pad(dxs, zero, [(0, 0, 0), (0, h - (ho - 1) * sh - 1, sh - 1),
                                  (0, wd - (wo - 1) * sw - 1, sw - 1), (0, 0, 0)])
    return dxs, dw


pointwise_conv.defvjp(_pointwise_fwd, _pointwise_bwd)


def explicit_padding(
    padding: str | Sequence[tuple[int, int]],
    spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
) -> list[tuple[int, int]]:
    """(low, high) pixels per spatial axis for "SAME" / "VALID" / explicit pairs, as
    ``lax.conv_general_dilated`` pads (dilated kernels count their effective size)."""
    if isinstance(padding, str):
        window = [(k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True)]
        return [tuple(p) for p in lax.padtype_to_pads(spatial, window, strides, padding)]
    return [tuple(int(v) for v in p) for p in padding]


def depthwise_conv(
    x: jnp.ndarray,
    kernel: jnp.ndarray,
    *,
    strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    dilation: Sequence[int] = (1, 1),
) -> jnp.ndarray:
    """Depthwise convolution as a sum of shifted products.

    x (N, H, W, C), kernel (kh, kw, 1, C * m) -> (N, H', W', C * m) in x's dtype; output channel
    ``c * m + j`` is filter ``j`` of input channel ``c`` (``lax.conv_general_dilated`` with
    ``feature_group_count=C``). Accumulates in float32 for bf16/fp16 inputs.
    """
    kh, kw, _, features = kernel.shape
    c = x.shape[-1]
    if features != c:  # channel multiplier m > 1: filter j of channel c reads channel c
        x = jnp.repeat(x, features // c, axis=-1)
    (sh, sw), (dh, dw) = tuple(strides), tuple(dilation)
    pads = explicit_padding(padding, x.shape[1:3], (kh, kw), (sh, sw), (dh, dw))
    acc = jnp.promote_types(x.dtype, jnp.float32)
    xp = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)])
    n, hp, wp, _ = xp.shape
    ho = (hp - (kh - 1) * dh - 1) // sh + 1
    wo = (wp - (kw - 1) * dw - 1) // sw + 1
    w = kernel[:, :, 0, :].astype(acc)
    y = None
    for i in range(kh):
        for j in range(kw):
            tap = lax.slice(
                xp,
                (0, i * dh, j * dw, 0),
                (n, i * dh + (ho - 1) * sh + 1, j * dw + (wo - 1) * sw + 1, features),
                (1, sh, sw, 1),
            )
            term = tap.astype(acc) * w[i, j]
            y = term if y is None else y + term
    return y.astype(x.dtype)


def patchify_conv(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    """Non-overlapping convolution (kernel == stride, no padding; ViT's patch embedding) as
    space-to-depth and one ``pointwise_conv``: x (N, H, W, C), kernel (p, q, C, F) ->
    (N, H // p, W // q, F); rows and columns beyond a whole patch are dropped, as VALID does."""
    p, q, c, f = kernel.shape
    n, h, w, _ = x.shape
    ho, wo = h // p, w // q
    x = x[:, : ho * p, : wo * q]
    patches = x.reshape(n, ho, p, wo, q, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, ho, wo, p * q * c)
    return pointwise_conv(patches, kernel.reshape(p * q * c, f), (1, 1))
