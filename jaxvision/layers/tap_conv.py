"""Dense k x k bf16 convolutions on the CPU as per-tap bf16 x bf16 -> float32 matmuls, chosen per
convolution shape and per pass (forward, input gradient, weight gradient) by a cost model.

XLA:CPU (jaxlib 0.10) upcasts every bf16 convolution to float32, so bf16 gains nothing on k x k
convolutions, while a bf16 x bf16 dot with a float32 result runs on the CPU's bf16 units
(AVX512-BF16 / AMX). A k x k convolution is a sum over its kh * kw taps of a (strided) slice of
the padded input times that tap's (C, F) kernel:

* forward ``y = sum_t xp[o * s + t * d] @ w[t]``;
* input gradient ``dx = sum_t place_t(dy @ w[t].T)``, each product padded back to the positions
  its tap read (stride - 1 zeros between them), then cropped to the unpadded input;
* weight gradient ``dw[t] = xp[o * s + t * d].T @ dy`` contracted over N, Ho, Wo
  (``lowering.weight_grad``, which transposes the narrower operand).

All products accumulate in float32; the results are cast back to the input dtype. The per-tap
form wins on many-channel small maps (3x3 256->256 at 14 px: 4.9 vs 14.5 ms forward, batch 16,
experiments/xla_cpu_conv) and loses on large maps, where the kh * kw slices cost more than the
bf16 units save. ``jaxvision.layers.conv_cost`` predicts both times for each pass from the
shape and picks the faster; each pass is chosen on its own, so a layer may run its forward pass
on XLA's convolution and its weight gradient as per-tap matmuls.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jaxvision.layers.conv_cost import ConvShape, choose
from jaxvision.layers.lowering import conv_out_hw, pad_hw, tap_slice, weight_grad, xla_conv

__all__ = ["tap_conv", "tap_conv_applies"]

TAP_DTYPES = (jnp.bfloat16,)  # float16 has no float32-accumulating units on x86 CPUs


def tap_conv_applies(x: jnp.ndarray, kernel: jnp.ndarray, groups: int) -> bool:
    """Whether ``tap_conv`` may serve this convolution: bf16, dense (groups == 1), k x k with
    more than one tap."""
    return (x.dtype in TAP_DTYPES and kernel.dtype == x.dtype and groups == 1
            and kernel.shape[0] * kernel.shape[1] > 1)


def _dot_f32(a, b, dims):
    return lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)


def _taps_forward(x, w, strides, dilation, pads):
    xp = pad_hw(x, pads)
    out_hw = conv_out_hw(x.shape[1:3], w.shape[:2], strides, dilation, pads)
    y = None
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            term = _dot_f32(tap_slice(xp, i, j, strides, dilation, out_hw), w[i, j],
                            (((3,), (0,)), ((), ())))
            y = term if y is None else y + term
    return y.astype(x.dtype)


def _taps_input_grad(x_shape, w, dy, strides, dilation, pads):
    _, h, wd, _ = x_shape
    hp, wp = h + sum(pads[0]), wd + sum(pads[1])
    ho, wo = dy.shape[1:3]
    (sh, sw), (dh, dw) = strides, dilation
    dxp = None
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            g = _dot_f32(dy, w[i, j], (((3,), (1,)), ((), ())))
            # Back to the padded input grid at the positions tap (i, j) read.
            lo_h, lo_w = i * dh, j * dw
            g = pad_hw(g, [(lo_h, hp - lo_h - (ho - 1) * sh - 1),
                         (lo_w, wp - lo_w - (wo - 1) * sw - 1)], interior=(sh - 1, sw - 1))
            dxp = g if dxp is None else dxp + g
    return pad_hw(dxp, [(-lo, -hi) for lo, hi in pads]).astype(dy.dtype)


def _taps_weight_grad(x, dy, kernel_hw, strides, dilation, pads):
    xp = pad_hw(x, pads)
    out_hw = dy.shape[1:3]
    rows = [[weight_grad(tap_slice(xp, i, j, strides, dilation, out_hw), dy, 3)
             for j in range(kernel_hw[1])] for i in range(kernel_hw[0])]
    return jnp.stack([jnp.stack(r) for r in rows])


def _shape(x_shape, w_shape, strides, dilation, pads) -> ConvShape:
    n, h, wd, c = x_shape
    kh, kw, _, f = w_shape
    ho, wo = conv_out_hw((h, wd), (kh, kw), strides, dilation, pads)
    return ConvShape(n=n, h=h, w=wd, c=c, f=f, kh=kh, kw=kw, ho=ho, wo=wo)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _tap_conv(x, w, strides, dilation, pads):
    return _tap_conv_fwd(x, w, strides, dilation, pads)[0]


def _tap_conv_fwd(x, w, strides, dilation, pads):
    if choose("forward", _shape(x.shape, w.shape, strides, dilation, pads)) == "taps":
        y = _taps_forward(x, w, strides, dilation, pads)
    else:
        y = xla_conv(x, w, strides, dilation, pads)
    return y, (x, w)


def _tap_conv_bwd(strides, dilation, pads, res, dy):
    x, w = res
    dy = dy.astype(x.dtype)
    shape = _shape(x.shape, w.shape, strides, dilation, pads)
    if choose("input_grad", shape) == "taps":
        dx = _taps_input_grad(x.shape, w, dy, strides, dilation, pads)
    else:
        dx = jax.vjp(lambda x: xla_conv(x, w, strides, dilation, pads), x)[1](dy)[0]
    if choose("weight_grad", shape) == "taps":
        dw = _taps_weight_grad(x, dy, w.shape[:2], strides, dilation, pads).astype(w.dtype)
    else:
        dw = jax.vjp(lambda w: xla_conv(x, w, strides, dilation, pads), w)[1](dy)[0]
    return dx, dw


_tap_conv.defvjp(_tap_conv_fwd, _tap_conv_bwd)


def tap_conv(
    x: jnp.ndarray,
    kernel: jnp.ndarray,
    *,
    strides: Sequence[int],
    padding: Sequence[tuple[int, int]],
    dilation: Sequence[int] = (1, 1),
) -> jnp.ndarray:
    """Dense bf16 convolution, each pass lowered as XLA's convolution or per-tap matmuls,
    whichever ``conv_cost.choose`` predicts faster for this shape.

    x (N, H, W, C) bf16, kernel (kh, kw, C, F) bf16, ``padding`` explicit (low, high) pairs ->
    (N, Ho, Wo, F) bf16, equal to ``lax.conv_general_dilated`` up to bf16 rounding (products
    accumulate in float32 either way). Gradients w.r.t. x and the kernel likewise.
    """
    pads = tuple(tuple(int(v) for v in p) for p in padding)
    return _tap_conv(x, kernel, tuple(strides), tuple(dilation), pads)
