"""Dense convolutions of images with few channels (grayscale, RGB, RGBA stems) on the CPU.

XLA:CPU (jaxlib 0.10) runs a convolution whose input has 1-4 channels far below the machine's
speed: its convolution kernels vectorize over the input channels, of which there are 1-3. The
same convolution written as a sum over the kh * kw * C (tap, channel) pairs of a strided slice
of the padded input times that pair's (F,) weights is one fused loop vectorized over the F
output channels. Measured on the 2-core development CPU (AVX-512; ``experiments/xla_cpu_conv``),
forward pass, XLA's convolution vs this sum:

* LeNet-5's conv1, 5x5 1->6 at 32 px, batch 64: 1.93 vs 0.22 ms;
* EfficientNet/MobileNet stem, 3x3/2 3->32 at 224 px, batch 16: 30.5 vs 5.2 ms;
* ResNet stem, 7x7/2 3->64 at 224 px, batch 16: not used (:data:`MAX_TERMS`).

Backward pass:

* **weight gradient** ``dw[t, c] = sum over N, Ho, Wo of xp[o * s + t * d, c] * dy`` as one
  product of the stacked slices (kh * kw * C, N * Ho * Wo) with dy (N * Ho * Wo, F) when that
  stack is at most :data:`STACK_BYTES` (LeNet's conv1: 0.92 vs 1.65 ms for XLA's); larger
  stacks (224-px stems: 31 vs 25 ms, 174 vs 139 ms) fall back to XLA's weight gradient;
* **input gradient**: XLA's (a stem's input gradient is never needed and is removed by XLA).

Products accumulate in float32 (bf16/fp16 inputs are upcast, as XLA:CPU does; float64 stays
float64) and the result is cast back to the input's dtype; values and both gradients are tested
against ``lax.conv_general_dilated`` (tests/layers/test_narrow_conv.py). Like jaxvision's other
CPU lowerings it has a custom VJP, so forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``,
``jax.linearize``) is not available through it: use ``impl='xla'`` (``set_conv_impl('xla')`` or
``JAXVISION_CONV_IMPL=xla``) for that; reverse mode, ``jax.hessian`` and jvp-of-grad work.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxvision.layers.lowering import conv_out_hw, pad_hw, tap_slice, xla_conv

__all__ = ["narrow_conv", "narrow_conv_applies", "MAX_CHANNELS", "MAX_TERMS", "STACK_BYTES"]

MAX_CHANNELS = 4  # grayscale, RGB, RGBA inputs: the layers where XLA:CPU's kernels starve
# Most (tap, channel) terms in the fused sum: 3x3 RGBA (36) and 5x5 grayscale (25) stay one
# loop; ResNet's 7x7 RGB stem (147 terms) ran slower than XLA's convolution at 224 px.
MAX_TERMS = 36
# Largest stacked-slice matrix (bytes, float32) for the product form of the weight gradient:
# a few MiB stay in the 2-core machine's caches (LeNet: 5 MiB, faster); 224-px stems (22 MiB
# and up) ran slower than XLA's own weight gradient (module docstring).
STACK_BYTES = 8 << 20


def narrow_conv_applies(x: jnp.ndarray, kernel: jnp.ndarray, groups: int) -> bool:
    """Whether :func:`narrow_conv` serves this convolution: dense (groups == 1), 1 to
    :data:`MAX_CHANNELS` input channels and at most :data:`MAX_TERMS` (tap, channel) pairs, input
    and kernel of one floating dtype (mixed dtypes go to XLA, which refuses them), more than one
    tap. The caller also leaves convolutions with an empty output to XLA."""
    kh, kw = kernel.shape[:2]
    return (groups == 1 and 1 <= x.shape[-1] <= MAX_CHANNELS
            and 1 < kh * kw and kh * kw * x.shape[-1] <= MAX_TERMS
            and jnp.issubdtype(x.dtype, jnp.floating) and kernel.dtype == x.dtype)


def _taps(xp, kernel_hw, strides, dilation, out_hw):
    """Yields ((i, j, c), slice (N, Ho, Wo)) of the padded input for every tap and channel, in
    the HWIO kernel's row-major order."""
    for i in range(kernel_hw[0]):
        for j in range(kernel_hw[1]):
            tap = tap_slice(xp, i, j, strides, dilation, out_hw)
            for c in range(xp.shape[-1]):
                yield (i, j, c), tap[..., c]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def narrow_conv(x: jnp.ndarray, kernel: jnp.ndarray, strides=(1, 1), dilation=(1, 1),
                pads=((0, 0), (0, 0))) -> jnp.ndarray:
    """x (N, H, W, C <= 4) * kernel (kh, kw, C, F) -> (N, Ho, Wo, F) in x's dtype: the same as
    ``lax.conv_general_dilated`` with these strides, rhs dilation and explicit (low, high)
    ``pads`` per spatial axis (``lowering.explicit_padding``)."""
    return _fwd(x, kernel, strides, dilation, pads)[0]


def _acc(dtype):
    """The accumulation dtype: float32 for bf16/fp16/float32, float64 for float64."""
    return jnp.promote_types(dtype, jnp.float32)


def _fwd(x, kernel, strides, dilation, pads):
    out_hw = conv_out_hw(x.shape[1:3], kernel.shape[:2], strides, dilation, pads)
    acc = _acc(x.dtype)
    w = kernel.astype(acc)
    y = None
    for (i, j, c), tap in _taps(pad_hw(x, pads), kernel.shape[:2], strides, dilation, out_hw):
        term = tap.astype(acc)[..., None] * w[i, j, c]
        y = term if y is None else y + term
    return y.astype(x.dtype), (x, kernel)


def _bwd(strides, dilation, pads, res, dy):
    x, kernel = res
    _, dx_fn = jax.vjp(lambda a: xla_conv(a, kernel, strides, dilation, pads), x)
    (dx,) = dx_fn(dy)
    kh, kw, c, f = kernel.shape
    m = dy.shape[0] * dy.shape[1] * dy.shape[2]
    if kh * kw * c * m * 4 > STACK_BYTES:
        _, dw_fn = jax.vjp(lambda k: xla_conv(x, k, strides, dilation, pads), kernel)
        return dx, dw_fn(dy)[0]
    acc = _acc(x.dtype)
    stack = jnp.stack([tap.astype(acc) for _, tap in
                       _taps(pad_hw(x, pads), (kh, kw), strides, dilation, dy.shape[1:3])])
    dw = lax.dot_general(stack.reshape(kh * kw * c, m), dy.astype(acc).reshape(m, f),
                         (((1,), (0,)), ((), ())))
    return dx, dw.reshape(kh, kw, c, f).astype(kernel.dtype)


narrow_conv.defvjp(_fwd, _bwd)
