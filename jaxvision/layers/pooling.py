"""Pooling (NHWC) with the padding modes of ``jaxvision.layers.conv`` ("SAME" = TensorFlow,
"SYMMETRIC"/int = PyTorch), PyTorch's ``ceil_mode``, global pooling and PyTorch's adaptive
average pooling (used by AlexNet/VGG classifiers so that any input size maps to the fixed grid).

All functions take x of shape (N, H, W, C) and keep its dtype.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxvision.layers.conv import Padding, _pair, conv_padding
from jaxvision.layers.lowering import conv_impl
from jaxvision.layers.onednn_pool import onednn_pool, onednn_pool_applies

__all__ = [
    "adaptive_avg_pool",
    "avg_pool",
    "global_avg_pool",
    "global_max_pool",
    "max_pool",
    "tiled_max_pool",
]


def _check_nhwc(x, fn: str):
    if x.ndim != 4:
        raise ValueError(f"{fn} expects NHWC input (N, H, W, C), got shape {x.shape}")


def _ceil_extra(size: int, k: int, s: int, lo: int, hi: int) -> int:
    """Extra bottom/right padding that turns floor into PyTorch's ceil_mode output size
    (a window may start in the left padding or the image, never only in the right padding)."""
    out = math.ceil((size + lo + hi - k) / s) + 1
    if (out - 1) * s >= size + lo:
        out -= 1
    return max((out - 1) * s + k - (size + lo + hi), 0)


def max_pool(
    x: jnp.ndarray,
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: Padding = "VALID",
    ceil_mode: bool = False,
) -> jnp.ndarray:
    """Max pooling; padded positions never win (they are -inf), as in TF and PyTorch.

    Args:
      window: int or (kh, kw). strides: defaults to ``window``.
      padding: "SAME" (TF), "VALID", "SYMMETRIC", int, pair or ((lo, hi), (lo, hi)).
      ceil_mode: PyTorch ``ceil_mode=True`` (explicit/symmetric/VALID padding only).

    With ``lowering.conv_impl()`` 'onednn' (the CPU default) float32/bf16 inputs use oneDNN's
    pooling (``jaxvision.layers.onednn_pool``) where it applies; otherwise on the CPU lowerings
    ('cpu' or 'onednn') non-overlapping unpadded windows use :func:`tiled_max_pool`. Both have a
    custom VJP: no forward-mode autodiff (use ``set_conv_impl('xla')``). Every lowering sends
    each window's gradient to its first maximum in row-major window order (as PyTorch).
    """
    _check_nhwc(x, "max_pool")
    window = _pair(window, "window")
    strides = window if strides is None else _pair(strides, "strides")
    pad = conv_padding(padding, window)
    if ceil_mode:
        if isinstance(pad, str):
            if pad == "SAME":
                raise ValueError("ceil_mode is a PyTorch option: use it with explicit padding, not 'SAME'")
            pad = [(0, 0), (0, 0)]
        pad = [
            (lo, hi + _ceil_extra(n, k, s, lo, hi))
            for n, k, s, (lo, hi) in zip(x.shape[1:3], window, strides, pad, strict=True)
        ]
    impl = conv_impl()
    if impl == "onednn":
        # Before tiled_max_pool: oneDNN's is faster on non-overlapping windows too (VGG's 2x2 of
        # (16, 112, 112, 128), forward + backward 151-225 vs 211-369 ms in float32, 100-137 vs
        # 267-369 ms in bf16; experiments/xla_cpu_conv/README.md, eighth session).
        pads = _explicit(pad, x.shape[1:3], window, strides)
        if onednn_pool_applies(x, window, strides, pads):
            return onednn_pool(x, window, strides, pads, "max")
    if (tuple(window) == tuple(strides) and pad in ("VALID", [(0, 0), (0, 0)])
            and impl in ("cpu", "onednn")):
        return tiled_max_pool(x, tuple(window))
    return nn.max_pool(x, window, strides, padding=pad)


def _explicit(pad, hw, window, strides) -> list[tuple[int, int]]:
    """"SAME"/"VALID"/pairs -> explicit (lo, hi) pairs, as lax resolves them."""
    if isinstance(pad, str):
        return [tuple(p) for p in lax.padtype_to_pads(hw, window, strides, pad)]
    return [tuple(p) for p in pad]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def tiled_max_pool(x: jnp.ndarray, window: tuple[int, int]) -> jnp.ndarray:
    """Max pooling over non-overlapping (kh, kw) tiles: x (N, H, W, C) -> (N, H // kh, W // kw, C),
    the same values and gradient as ``max_pool(x, window)`` ("VALID", strides = window).

    The gradient goes to the first maximum of each tile in row-major order, as XLA's
    select-and-scatter (and PyTorch) send it; rows and columns past the last whole tile get
    zero. A tile holding NaN sends its gradient to its first NaN (XLA's to another element; the
    values agree). Custom VJP: no forward-mode autodiff (``jax.jvp``; use
    ``set_conv_impl('xla')``), while reverse mode, ``jax.hessian`` and jvp-of-grad work (its
backward is plain JAX). Written as a reshape, a max and a one-hot of the argmax because XLA:CPU's
    select-and-scatter is slow: LeNet-5's 2x2 pool of (64, 28, 28, 6), backward 1.68 vs
    0.18 ms on the 2-core development CPU (jaxlib 0.10).
    """
    return _tiles(x, window).max(axis=-1)


def _tiles(x, window):
    """x (N, H, W, C) -> (N, H // kh, W // kw, C, kh * kw), each tile's pixels in row-major order."""
    (kh, kw), (n, h, w, c) = window, x.shape
    ho, wo = h // kh, w // kw
    x = x[:, : ho * kh, : wo * kw]
    return (x.reshape(n, ho, kh, wo, kw, c).transpose(0, 1, 3, 5, 2, 4)
            .reshape(n, ho, wo, c, kh * kw))


def _tiled_max_pool_fwd(x, window):
    # The plain computation, not the custom_vjp function: calling that here would block
    # differentiating the backward pass (jax.hessian, jvp-of-grad).
    return _tiles(x, window).max(axis=-1), x


def _tiled_max_pool_bwd(window, x, dy):
    (kh, kw), (n, h, w, c) = window, x.shape
    ho, wo = h // kh, w // kw
    first = jnp.argmax(_tiles(x, window), axis=-1)  # first maximum (NaN counts as the maximum)
    dx = jnp.where(first[..., None] == jnp.arange(kh * kw), dy[..., None], jnp.zeros((), dy.dtype))
    dx = dx.reshape(n, ho, wo, c, kh, kw).transpose(0, 1, 4, 2, 5, 3).reshape(n, ho * kh, wo * kw, c)
    return (jnp.pad(dx, ((0, 0), (0, h - ho * kh), (0, w - wo * kw), (0, 0))),)


tiled_max_pool.defvjp(_tiled_max_pool_fwd, _tiled_max_pool_bwd)


def avg_pool(
    x: jnp.ndarray,
    window: int | Sequence[int],
    strides: int | Sequence[int] | None = None,
    padding: Padding = "VALID",
    count_include_pad: bool | None = None,
) -> jnp.ndarray:
    """Average pooling.

    ``count_include_pad`` defaults to the convention of the padding mode: False for "SAME"
    (TensorFlow averages over the real pixels only), True for explicit/symmetric padding
    (PyTorch's ``AvgPool2d`` default). The result has x's dtype.

    With ``lowering.conv_impl() == 'onednn'`` (the CPU default) float32/bf16 inputs use
    oneDNN's average pooling where it applies (``jaxvision.layers.onednn_pool``; custom VJP,
    no forward-mode autodiff: ``set_conv_impl('xla')``), which sums bf16 in float32.
    """
    _check_nhwc(x, "avg_pool")
    window = _pair(window, "window")
    strides = window if strides is None else _pair(strides, "strides")
    pad = conv_padding(padding, window)
    if count_include_pad is None:
        count_include_pad = pad != "SAME"
    if conv_impl() == "onednn":
        pads = _explicit(pad, x.shape[1:3], window, strides)
        if onednn_pool_applies(x, window, strides, pads):
            kind = "avg_include_pad" if count_include_pad else "avg_exclude_pad"
            return onednn_pool(x, window, strides, pads, kind)
    # flax divides by a float32 count without count_include_pad (bf16 in, float32 out).
    return nn.avg_pool(x, window, strides, padding=pad,
                       count_include_pad=count_include_pad).astype(x.dtype)


def global_avg_pool(x: jnp.ndarray, keepdims: bool = False) -> jnp.ndarray:
    """Mean over H and W: (N, H, W, C) -> (N, C) (or (N, 1, 1, C) with ``keepdims``).
    The sum is accumulated in float32 for low-precision inputs; the result keeps x's dtype."""
    _check_nhwc(x, "global_avg_pool")
    return jnp.mean(x, axis=(1, 2), keepdims=keepdims, dtype=jnp.promote_types(x.dtype, jnp.float32)).astype(x.dtype)


def global_max_pool(x: jnp.ndarray, keepdims: bool = False) -> jnp.ndarray:
    """Max over H and W: (N, H, W, C) -> (N, C) (or (N, 1, 1, C) with ``keepdims``)."""
    _check_nhwc(x, "global_max_pool")
    return jnp.max(x, axis=(1, 2), keepdims=keepdims)


def _adaptive_matrix(n_in: int, n_out: int) -> np.ndarray:
    # PyTorch's bins: [floor(i * n_in / n_out), ceil((i + 1) * n_in / n_out)).
    m = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
        lo = (i * n_in) // n_out
        hi = -((-(i + 1) * n_in) // n_out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def adaptive_avg_pool(x: jnp.ndarray, output_size: int | Sequence[int]) -> jnp.ndarray:
    """PyTorch ``AdaptiveAvgPool2d``: (N, H, W, C) -> (N, oh, ow, C) with PyTorch's bin edges
    (bins overlap or repeat pixels when the input is smaller than the output)."""
    _check_nhwc(x, "adaptive_avg_pool")
    oh, ow = _pair(output_size, "output_size")
    h, w = x.shape[1:3]
    if (h, w) == (oh, ow):
        return x
    mh = jnp.asarray(_adaptive_matrix(h, oh), x.dtype)
    mw = jnp.asarray(_adaptive_matrix(w, ow), x.dtype)
    return jnp.einsum("oh,nhwc,pw->nopc", mh, x, mw)
