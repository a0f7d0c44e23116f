"""TensorFlow's antialiased bilinear resize in NumPy, bit for bit.

``tf.image.resize(image, (h, w), method="bilinear", antialias=True)`` (the pipelines' resize,
``augment.resize``) runs TensorFlow's ScaleAndTranslate kernel with a triangle kernel. Computing
its span starts and weights with the same float32 operations, and gathering rows first, then
columns, each output a float32 sum ``acc = acc + w * x`` over the span in order (no fused
multiply-add), gives the same bits (tests/data/test_antialiased_resize.py compares the two over
up- and down-scaling, odd sizes and channel counts). This lets ``predict`` and ``explain`` make
the evaluation pipeline's exact model input without importing TensorFlow (3-5 CPU seconds).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["resize_bilinear_antialiased"]

_F = np.float32
_RADIUS = _F(1.0)  # the triangle kernel's support


def _spans(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """First input index (out_size,) and normalized weights (out_size, span) of every output
    position along one axis, as TensorFlow's ComputeSpansCore computes them (translation 0)."""
    inv_scale = _F(1.0) / (_F(out_size) / _F(in_size))
    kernel_scale = max(inv_scale, _F(1.0))  # antialias: widen the kernel when shrinking
    one_over_kernel_scale = _F(1.0) / kernel_scale
    reach = _F(_RADIUS * kernel_scale)
    span = min(2 * int(math.ceil(reach)) + 1, in_size)
    starts = np.zeros(out_size, np.int64)
    weights = np.zeros((out_size, span), np.float32)
    for x in range(out_size):
        sample = _F(_F(x) + _F(0.5)) * inv_scale
        if sample < 0 or sample > in_size:
            continue
        first = min(max(int(math.ceil(_F(sample - reach) - _F(0.5))), 0), in_size - 1)
        end = min(max(int(math.floor(_F(sample + reach) - _F(0.5))), 0), in_size - 1) + 1
        pos = (np.arange(first, end, dtype=np.float32) + _F(0.5)) - sample
        w = np.maximum(_F(0.0), _F(1.0) - np.abs(pos * one_over_kernel_scale))
        total = _F(0.0)
        for v in w:  # in order, in float32, as the kernel sums them
            total = _F(total + v)
        starts[x] = first
        if abs(total) >= 1000.0 * np.finfo(np.float32).tiny:
            weights[x, : end - first] = w * (_F(1.0) / total)
    return starts, weights


def _gather(image: np.ndarray, starts: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """Weighted sums along ``axis``: out[o] = sum_i weights[o, i] * image[starts[o] + i]."""
    img = np.moveaxis(image, axis, 0)
    n = img.shape[0]
    expand = (slice(None),) + (None,) * (img.ndim - 1)
    acc = np.zeros((len(starts), *img.shape[1:]), np.float32)
    for i in range(weights.shape[1]):
        # TF's span stops at the input's end; so does this sum (adding 0 * x could turn -0 to 0).
        inside = (starts + i < n)[expand]
        rows = img[np.minimum(starts + i, n - 1)]
        acc = np.where(inside, acc + weights[:, i][expand] * rows, acc)
    return np.moveaxis(acc, 0, axis)


def resize_bilinear_antialiased(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32 (..., H, W, C) -> float32 (..., height, width, C), equal bit for bit to
    ``tf.image.resize(image, (height, width), "bilinear", antialias=True)`` of each image."""
    image = np.asarray(image, np.float32)
    h_axis, w_axis = image.ndim - 3, image.ndim - 2
    rows = _gather(image, *_spans(image.shape[h_axis], height), axis=h_axis)
    return _gather(rows, *_spans(image.shape[w_axis], width), axis=w_axis)
