"""2-D convolutions (NHWC): one wrapper for TF-"SAME" and PyTorch-style symmetric padding, groups,
dilation; depthwise convolution; weight-standardized convolution (BiT / ViT hybrids).

Padding (``padding=`` of every conv and pooling layer here):

* ``"SAME"``: TensorFlow/Flax semantics. Output size ``ceil(in / stride)``; the total padding
  ``max((out - 1) * stride + (k - 1) * dilation + 1 - in, 0)`` is split with the extra pixel at the
  bottom/right (asymmetric for even totals), exactly as ``tf.nn.conv2d(padding="SAME")``.
* ``"VALID"``: no padding.
* ``"SYMMETRIC"``: PyTorch's usual ``padding=(k - 1) // 2 * dilation`` on every side.
* an int ``p`` or a pair ``(ph, pw)``: that many pixels on both sides (PyTorch ``padding=p``).
* a sequence of ``(low, high)`` pairs, one per spatial dimension: used as is.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxvision.layers.lowering import (
    conv_out_hw,
    depthwise_conv,
    explicit_padding,
    pad_beyond_kernel,
    patchify_conv,
    pointwise_conv,
    resolve_conv_impl,
)
from jaxvision.layers.narrow_conv import narrow_conv, narrow_conv_applies
from jaxvision.layers.onednn_conv import onednn_conv, onednn_conv_applies
from jaxvision.layers.tap_conv import tap_conv, tap_conv_applies

__all__ = [
    "Conv",
    "DepthwiseConv",
    "StdConv",
    "conv2d",
    "conv_padding",
    "weight_standardize",
]

Padding = str | int | Sequence[int] | Sequence[tuple[int, int]]

# He-normal on fan-out: what torchvision (ResNet, VGG, MobileNet) and the official EfficientNet
# code use for convolutions.
default_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _pair(v: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(i) for i in v)
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")
    return v  # type: ignore[return-value]


def conv_padding(
    padding: Padding, kernel_size: Sequence[int], dilation: Sequence[int] = (1, 1)
) -> str | list[tuple[int, int]]:
    """Resolve a padding spec (see module docstring) to what ``lax`` takes: "SAME", "VALID" or
    a list of (low, high) pairs per spatial dimension."""
    if isinstance(padding, str):
        p = padding.upper()
        if p in ("SAME", "VALID"):
            return p
        if p == "SYMMETRIC":
            return [((k - 1) // 2 * d,) * 2 for k, d in zip(kernel_size, dilation, strict=True)]
        raise ValueError(
            f"unknown padding {padding!r}: use 'SAME' (TensorFlow), 'VALID', 'SYMMETRIC' "
            "(PyTorch (k-1)//2), an int, a pair of ints or ((lo, hi), (lo, hi))"
        )
    if isinstance(padding, int):
        return [(padding, padding)] * len(kernel_size)
    padding = list(padding)
    if len(padding) == len(kernel_size) and all(isinstance(p, int) for p in padding):
        return [(int(p), int(p)) for p in padding]
    if len(padding) == len(kernel_size) and all(len(p) == 2 for p in padding):
        return [(int(lo), int(hi)) for lo, hi in padding]
    raise ValueError(f"padding {padding!r} does not match a {len(kernel_size)}-d kernel")


def weight_standardize(kernel: jnp.ndarray, eps: float = 1e-5, eps_in_sqrt: bool = False
                       ) -> jnp.ndarray:
    """Standardize an HWIO kernel per output channel over (H, W, I): ``(w - mean) / (std + eps)``
    as ``StdConv`` in google-research/vision_transformer and big_vision's BiT, or with
    ``eps_in_sqrt`` ``(w - mean) / sqrt(var + eps)`` as timm's ``StdConv2d``/``StdConv2dSame``
    (biased variance in both)."""
    axes = tuple(range(kernel.ndim - 1))
    kernel = kernel - jnp.mean(kernel, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(kernel), axis=axes, keepdims=True)
    if eps_in_sqrt:
        return kernel * lax.rsqrt(var + eps)
    return kernel / (jnp.sqrt(var) + eps)


def conv2d(
    x: jnp.ndarray,
    kernel: jnp.ndarray,
    *,
    strides: tuple[int, int] = (1, 1),
    padding: str | list[tuple[int, int]] = "SAME",
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
    impl: str | None = None,
) -> jnp.ndarray:
    """x (N, H, W, C) * kernel (kh, kw, C / groups, F) -> (N, H', W', F), in x's dtype.

    ``padding`` as ``lax`` takes it ("SAME", "VALID" or (low, high) pairs; see ``conv_padding``).
    ``impl``: 'xla' (``lax.conv_general_dilated``), 'onednn' (oneDNN's convolution where
    ``jaxvision.layers.onednn_conv`` is built and applies, else 'cpu'), 'cpu' (unpadded 1x1 and patchify
    (kernel == stride) convolutions as matmuls, depthwise ones as sums of shifted products, dense
    bf16 k x k ones per pass as XLA's convolution or per-tap matmuls by a cost model, those of
    1-4 channel inputs as fused sums over taps; see ``jaxvision.layers.lowering``,
    ``jaxvision.layers.tap_conv`` and ``jaxvision.layers.narrow_conv``; custom VJPs, so no
    ``jax.jvp`` / ``jax.jacfwd`` through them: use 'xla' for forward mode) or None for ``lowering.conv_impl()`` ('onednn' on the CPU
    backend).
    """
    strides, dilation = _check_conv_args(x, kernel, strides, padding, dilation, groups)
    impl = resolve_conv_impl(impl)
    pads = explicit_padding(padding, x.shape[1:3], kernel.shape[:2], strides, dilation)
    x, pads = pad_beyond_kernel(x, pads, kernel.shape[:2], dilation)
    if impl in ("cpu", "onednn"):
        # An empty output (the kernel does not fit) or input is XLA's to give.
        if min(conv_out_hw(x.shape[1:3], kernel.shape[:2], strides, dilation, pads)) > 0 \
                and x.shape[-1] > 0:
            if impl == "onednn" and onednn_conv_applies(x, kernel, pads, groups, dilation):
                return onednn_conv(x, kernel, tuple(strides), tuple(map(tuple, pads)),
                                   tuple(dilation), groups)
            y = _cpu_conv(x, kernel, strides, pads, dilation, groups)
            if y is not None:
                return y
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=strides,
        padding=pads,
        rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )


def _check_conv_args(x, kernel, strides, padding, dilation, groups):
    """(strides, dilation) as pairs of ints; refuses what XLA's convolution refuses, before any
    lowering sees it (the CPU forms would otherwise compute something for a channel mismatch
    or a zero stride)."""
    if x.ndim != 4 or kernel.ndim != 4:
        raise ValueError(f"conv2d takes x (N, H, W, C) and kernel (kh, kw, C / groups, F); got "
                         f"shapes {x.shape} and {kernel.shape}")
    if groups < 1 or kernel.shape[2] * groups != x.shape[-1] or kernel.shape[3] % groups:
        raise ValueError(
            f"conv2d: kernel {kernel.shape} with groups={groups} needs x with "
            f"{kernel.shape[2] * groups} channels and F divisible by groups; x has {x.shape[-1]}")
    if not isinstance(padding, str) and (
            len(list(padding)) != 2 or any(len(tuple(p)) != 2 for p in padding)):
        raise ValueError(f"conv2d: padding must be 'SAME', 'VALID' or two (low, high) pairs, "
                         f"got {padding!r}")
    return _int_pair(strides, "strides"), _int_pair(dilation, "dilation")


def _int_pair(v, name: str) -> tuple[int, int]:
    """``v`` (an int or a pair of ints, each >= 1) as a pair; ValueError otherwise."""
    try:
        pair = (operator.index(v),) * 2 if not isinstance(v, Sequence | np.ndarray) \
            else tuple(operator.index(i) for i in v)
    except TypeError:
        pair = ()
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"conv2d: {name} must be two integers >= 1 (or one), got {v!r}")
    return pair


def _cpu_conv(x, kernel, strides, pads, dilation, groups):
    """The CPU lowering of this convolution (see ``conv2d``), or None for XLA's convolution."""
    if groups == x.shape[-1] and groups > 1 and kernel.shape[2] == 1:
        return depthwise_conv(x, kernel, strides=strides, padding=pads, dilation=dilation)
    if groups == 1 and all(p == (0, 0) for p in pads):
        if kernel.shape[:2] == (1, 1):
            return pointwise_conv(x, kernel[0, 0], tuple(strides))
        if tuple(kernel.shape[:2]) == tuple(strides) and tuple(dilation) == (1, 1):
            return patchify_conv(x, kernel)
    if narrow_conv_applies(x, kernel, groups):
        return narrow_conv(x, kernel, tuple(strides), tuple(dilation), tuple(pads))
    if tap_conv_applies(x, kernel, groups):
        return tap_conv(x, kernel, strides=strides, padding=pads, dilation=dilation)
    return None


def _conv(
    module: nn.Module,
    x: jnp.ndarray,
    *,
    features: int,
    kernel_size: tuple[int, int],
    strides: tuple[int, int],
    padding: Padding,
    dilation: tuple[int, int],
    groups: int,
    use_bias: bool,
    kernel_init: Callable,
    bias_init: Callable,
    dtype: Any,
    param_dtype: Any,
    standardize: Callable | None = None,
) -> jnp.ndarray:
    if x.ndim != 4:
        raise ValueError(f"{module.__class__.__name__} expects NHWC input (N, H, W, C), got shape {x.shape}")
    in_features = x.shape[-1]
    if in_features % groups or features % groups:
        raise ValueError(
            f"groups={groups} must divide both the input channels ({in_features}) and the output "
            f"channels ({features})"
        )
    kernel = module.param(
        "kernel", kernel_init, (*kernel_size, in_features // groups, features), param_dtype
    )
    if standardize is not None:
        # Standardize in float32 (the parameter dtype), then cast for the convolution.
        kernel = standardize(kernel)
    bias = module.param("bias", bias_init, (features,), param_dtype) if use_bias else None
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=dtype)
    y = conv2d(x, kernel, strides=strides, padding=conv_padding(padding, kernel_size, dilation),
               dilation=dilation, groups=groups)
    if bias is not None:
        y = y + bias
    return y


class Conv(nn.Module):
    """2-D convolution, NHWC.

    Attributes:
      features: output channels.
      kernel_size: int or (kh, kw).
      strides: int or (sh, sw).
      padding: see the module docstring ("SAME" = TensorFlow, "SYMMETRIC" = PyTorch).
      dilation: int or (dh, dw) (atrous rate).
      groups: feature groups (``groups == in_channels`` is a depthwise conv).
      use_bias: add a bias (set False before a norm layer).
      dtype: compute dtype; param_dtype: parameter dtype.

    Input (N, H, W, C_in) -> output (N, H', W', features) in ``dtype``. Parameters: ``kernel``
    (kh, kw, C_in / groups, features) and ``bias`` (features,).
    """

    features: int
    kernel_size: int | Sequence[int] = 3
    strides: int | Sequence[int] = 1
    padding: Padding = "SAME"
    dilation: int | Sequence[int] = 1
    groups: int = 1
    use_bias: bool = True
    kernel_init: Callable = default_conv_init
    bias_init: Callable = nn.initializers.zeros
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def _standardize(self) -> Callable | None:
        """The kernel transform applied at every call (none for a plain convolution)."""
        return None

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return _conv(
            self,
            x,
            features=self.features,
            kernel_size=_pair(self.kernel_size, "kernel_size"),
            strides=_pair(self.strides, "strides"),
            padding=self.padding,
            dilation=_pair(self.dilation, "dilation"),
            groups=self.groups,
            use_bias=self.use_bias,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            standardize=self._standardize(),
        )


class StdConv(Conv):
    """Weight-standardized convolution (Qiao et al. 2019; BiT, the ViT paper's ResNet hybrids).

    The kernel parameter is stored raw and standardized per output channel at every call
    (``weight_standardize``). Pair it with GroupNorm. Same attributes as ``Conv`` plus ``eps``
    (1e-5, as google-research/vision_transformer) and ``eps_in_sqrt`` (False; True with
    ``eps=1e-8`` is timm's ``StdConv2dSame`` of its ViT hybrids).
    """

    eps: float = 1e-5
    eps_in_sqrt: bool = False

    def _standardize(self) -> Callable:
        return functools.partial(weight_standardize, eps=self.eps, eps_in_sqrt=self.eps_in_sqrt)


class DepthwiseConv(nn.Module):
    """Depthwise convolution: every input channel is convolved with its own
    ``channel_multiplier`` filters (``groups == in_channels``).

    Input (N, H, W, C) -> output (N, H', W', C * channel_multiplier). Kernel (kh, kw, 1, C * m);
    output channel ``c * m + j`` is filter ``j`` of input channel ``c`` (TensorFlow's order).
    """

    kernel_size: int | Sequence[int] = 3
    strides: int | Sequence[int] = 1
    padding: Padding = "SAME"
    dilation: int | Sequence[int] = 1
    channel_multiplier: int = 1
    use_bias: bool = False
    kernel_init: Callable = default_conv_init
    bias_init: Callable = nn.initializers.zeros
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        c = x.shape[-1]
        return _conv(
            self,
            x,
            features=c * self.channel_multiplier,
            kernel_size=_pair(self.kernel_size, "kernel_size"),
            strides=_pair(self.strides, "strides"),
            padding=self.padding,
            dilation=_pair(self.dilation, "dilation"),
            groups=c,
            use_bias=self.use_bias,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
