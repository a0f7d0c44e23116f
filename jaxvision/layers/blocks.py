"""Convolutional building blocks (NHWC): conv-norm-act, squeeze-and-excitation, ResNet basic and
bottleneck blocks (v1.5), depthwise-separable block, MBConv (MobileNetV2 / EfficientNet) and
FusedMBConv (EfficientNetV2).

Every block is called as ``block(x, train=False)`` and takes factories so the same code serves
several papers:

* ``conv``: a module class/partial called as ``conv(features, kernel_size, strides=...,
  padding=..., groups=..., use_bias=..., dtype=..., param_dtype=..., name=...)``; default
  ``Conv``; ``StdConv`` gives weight-standardized convolutions (BiT / ViT hybrids).
* ``norm``: called as ``norm(dtype=..., param_dtype=..., name=..., [scale_init=...])`` and then
  ``(x, train)``; default ``BatchNorm`` (use ``functools.partial(BatchNorm, momentum=...,
  epsilon=..., axis_name=...)`` for model-specific statistics) or ``GroupNorm``.

Convs followed by a norm have no bias. Residual additions happen only where input and output
shapes agree (blocks say when); DropPath (rng stream 'drop_path') drops the residual branch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.layers.conv import Conv, Padding
from jaxvision.layers.drop import DropPath
from jaxvision.layers.norm import BatchNorm

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ConvNormAct",
    "DepthwiseSeparable",
    "FusedMBConv",
    "InvertedResidual",
    "MBConv",
    "SqueezeExcite",
]

ModuleDef = Callable[..., nn.Module]
Activation = Callable[[jnp.ndarray], jnp.ndarray]


def _norm(factory: ModuleDef, module: nn.Module, name: str, zero_init: bool = False) -> nn.Module:
    kw: dict[str, Any] = {"dtype": module.dtype, "param_dtype": module.param_dtype, "name": name}
    if zero_init:
        kw["scale_init"] = nn.initializers.zeros
    return factory(**kw)


class ConvNormAct(nn.Module):
    """conv (no bias) -> norm -> activation (``act=None`` skips it). x (N, H, W, C) ->
    (N, H', W', features). Submodules ``conv`` and ``norm``."""

    features: int
    kernel_size: int = 3
    strides: int = 1
    padding: Padding = "SAME"
    groups: int = 1
    act: Activation | None = nn.relu
    conv: ModuleDef = Conv
    norm: ModuleDef = BatchNorm
    zero_init_norm: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = self.conv(
            self.features,
            self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            groups=self.groups,
            use_bias=False,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="conv",
        )(x)
        x = _norm(self.norm, self, "norm", self.zero_init_norm)(x, train)
        return x if self.act is None else self.act(x)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): x * gate(expand(act(reduce(mean_hw(x))))).

    The two 1x1 convs have biases. ``gate`` (sigmoid by default) keeps the per-channel scale in
    (0, 1). x (N, H, W, C) -> (N, H, W, C). Params ``reduce`` (1, 1, C, reduced_features) and
    ``expand`` (1, 1, reduced_features, C).
    """

    reduced_features: int
    act: Activation = nn.relu
    gate: Activation = nn.sigmoid
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        s = jnp.mean(x, axis=(1, 2), keepdims=True, dtype=jnp.float32).astype(x.dtype)
        conv = lambda f, name: Conv(f, 1, use_bias=True, dtype=self.dtype, param_dtype=self.param_dtype, name=name)  # noqa: E731
        s = self.act(conv(self.reduced_features, "reduce")(s))
        s = self.gate(conv(c, "expand")(s))
        return x * s


class BasicBlock(nn.Module):
    """ResNet basic block: 3x3 (stride) -> norm -> act -> 3x3 -> norm, + shortcut, act.

    The shortcut is a strided 1x1 conv + norm when the stride is not 1 or the channels change,
    else the identity. Output channels = ``features`` (expansion 1). ``zero_init_last`` starts
    the residual branch at zero (Goyal et al. 2017). x (N, H, W, C) -> (N, H/s, W/s, features).
    """

    features: int
    strides: int = 1
    conv: ModuleDef = Conv
    norm: ModuleDef = BatchNorm
    act: Activation = nn.relu
    padding: Padding = "SYMMETRIC"
    zero_init_last: bool = False
    drop_path_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    expansion: ClassVar[int] = 1

    def _conv(self, features, k, strides, name, groups=1):
        pad = self.padding if k > 1 else "VALID"
        return self.conv(features, k, strides=strides, padding=pad, groups=groups, use_bias=False,
                         dtype=self.dtype, param_dtype=self.param_dtype, name=name)

    def _shortcut(self, x, out_features, train):
        if self.strides != 1 or x.shape[-1] != out_features:
            x = self._conv(out_features, 1, self.strides, "downsample_conv")(x)
            x = _norm(self.norm, self, "downsample_norm")(x, train)
        return x

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = jnp.asarray(x, self.dtype)  # the residual sum stays in the compute dtype
        y = self._conv(self.features, 3, self.strides, "conv1")(x)
        y = self.act(_norm(self.norm, self, "norm1")(y, train))
        y = self._conv(self.features, 3, 1, "conv2")(y)
        y = _norm(self.norm, self, "norm2", self.zero_init_last)(y, train)
        y = DropPath(self.drop_path_rate)(y, train)
        return self.act(self._shortcut(x, self.features, train) + y)


class Bottleneck(BasicBlock):
    """ResNet v1.5 bottleneck: 1x1 -> norm -> act -> 3x3 (stride here, v1.5) -> norm -> act ->
    1x1 (features * 4) -> norm, + shortcut, act. ``stride_in_1x1=True`` gives ResNet v1 (stride on
    the first 1x1, as the original paper and Keras applications).

    ``groups`` / ``base_width`` give ResNeXt / wide variants (width = features * base_width / 64
    * groups, as torchvision). With ``conv=StdConv, norm=GroupNorm`` this is the ResidualUnit of
    google-research/vision_transformer's ResNet hybrids. x (N, H, W, C) -> (N, H/s, W/s, 4 * features).
    """

    groups: int = 1
    base_width: int = 64
    stride_in_1x1: bool = False  # ResNet v1 (original paper, Keras/Caffe): stride on conv1

    expansion: ClassVar[int] = 4

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = jnp.asarray(x, self.dtype)
        width = int(self.features * (self.base_width / 64.0)) * self.groups
        out = self.features * self.expansion
        s1, s3 = (self.strides, 1) if self.stride_in_1x1 else (1, self.strides)
        y = self._conv(width, 1, s1, "conv1")(x)
        y = self.act(_norm(self.norm, self, "norm1")(y, train))
        y = self._conv(width, 3, s3, "conv2", groups=self.groups)(y)
        y = self.act(_norm(self.norm, self, "norm2")(y, train))
        y = self._conv(out, 1, 1, "conv3")(y)
        y = _norm(self.norm, self, "norm3", self.zero_init_last)(y, train)
        y = DropPath(self.drop_path_rate)(y, train)
        return self.act(self._shortcut(x, out, train) + y)


class DepthwiseSeparable(nn.Module):
    """Depthwise-separable conv block (MobileNetV1; EfficientNet's expand-ratio-1 block is
    ``MBConv(expand_ratio=1)``): depthwise kxk (stride) -> norm -> act -> [SE] -> pointwise 1x1
    -> norm -> [act if ``pw_act``], + x when ``skip`` and stride 1 and channels equal.
    x (N, H, W, C) -> (N, H/s, W/s, features)."""

    features: int
    kernel_size: int = 3
    strides: int = 1
    se_ratio: float = 0.0
    act: Activation = nn.relu
    pw_act: bool = False
    skip: bool = True
    padding: Padding = "SAME"
    drop_path_rate: float = 0.0
    conv: ModuleDef = Conv
    norm: ModuleDef = BatchNorm
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = jnp.asarray(x, self.dtype)
        c = x.shape[-1]
        kw = dict(conv=self.conv, norm=self.norm, dtype=self.dtype, param_dtype=self.param_dtype)
        y = ConvNormAct(c, self.kernel_size, self.strides, self.padding, groups=c, act=self.act,
                        name="dw", **kw)(x, train)
        if self.se_ratio > 0:
            y = SqueezeExcite(max(1, int(c * self.se_ratio)), act=self.act, dtype=self.dtype,
                              param_dtype=self.param_dtype, name="se")(y)
        y = ConvNormAct(self.features, 1, 1, "VALID", act=self.act if self.pw_act else None,
                        name="pw", **kw)(y, train)
        if self.skip and self.strides == 1 and c == self.features:
            y = x + DropPath(self.drop_path_rate)(y, train)
        return y


class MBConv(nn.Module):
    """Mobile inverted bottleneck (MobileNetV2, EfficientNet).

    [1x1 expand to ``round(C_in * expand_ratio)`` -> norm -> act] (skipped when expand_ratio is 1)
    -> depthwise kxk (stride) -> norm -> act -> [SE with ``max(1, int(C_in * se_ratio))`` reduced
    channels, as the official EfficientNet] -> 1x1 project to ``features`` -> norm (no act),
    + x (after DropPath) exactly when stride is 1 and C_in == features.

    MobileNetV3 gives the widths explicitly instead: ``hidden_features`` (expand exactly when it
    differs from C_in) and ``se_features`` (SE on when given), with ``se_act`` (ReLU there)
    instead of the block's activation inside SE.

    Submodules: ``expand``, ``dw``, ``se``, ``project`` (each a ConvNormAct, except ``se``).
    x (N, H, W, C_in) -> (N, ceil(H/s), ceil(W/s), features) with "SAME" padding.
    """

    features: int
    expand_ratio: float = 6.0
    kernel_size: int = 3
    strides: int = 1
    se_ratio: float = 0.0
    act: Activation = nn.swish
    se_gate: Activation = nn.sigmoid
    hidden_features: int | None = None
    se_features: int | None = None
    se_act: Activation | None = None
    padding: Padding = "SAME"
    drop_path_rate: float = 0.0
    zero_init_last: bool = False
    conv: ModuleDef = Conv
    norm: ModuleDef = BatchNorm
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def _se(self, y, c_in):
        if self.se_features is not None:
            reduced = self.se_features
        elif self.se_ratio > 0:
            reduced = max(1, int(c_in * self.se_ratio))
        else:
            return y
        return SqueezeExcite(reduced, act=self.se_act or self.act, gate=self.se_gate,
                             dtype=self.dtype, param_dtype=self.param_dtype, name="se")(y)

    def _residual(self, x, y, train):
        if self.strides == 1 and x.shape[-1] == self.features:
            return x + DropPath(self.drop_path_rate)(y, train)
        return y

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = jnp.asarray(x, self.dtype)
        c_in = x.shape[-1]
        hidden = self.hidden_features or int(round(c_in * self.expand_ratio))
        expand = hidden != c_in if self.hidden_features else self.expand_ratio != 1
        kw = dict(conv=self.conv, norm=self.norm, dtype=self.dtype, param_dtype=self.param_dtype)
        y = x
        if expand:
            y = ConvNormAct(hidden, 1, 1, "VALID", act=self.act, name="expand", **kw)(y, train)
        y = ConvNormAct(hidden, self.kernel_size, self.strides, self.padding, groups=hidden,
                        act=self.act, name="dw", **kw)(y, train)
        y = self._se(y, c_in)
        y = ConvNormAct(self.features, 1, 1, "VALID", act=None, zero_init_norm=self.zero_init_last,
                        name="project", **kw)(y, train)
        return self._residual(x, y, train)


class FusedMBConv(MBConv):
    """Fused MBConv (EfficientNetV2): the expand 1x1 and the depthwise kxk are one regular kxk
    conv (stride) -> norm -> act -> [SE] -> 1x1 project -> norm; with ``expand_ratio == 1`` a
    single kxk conv -> norm -> act. Residual (with DropPath) exactly when stride 1 and
    C_in == features. x (N, H, W, C_in) -> (N, H/s, W/s, features)."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = jnp.asarray(x, self.dtype)
        c_in = x.shape[-1]
        kw = dict(conv=self.conv, norm=self.norm, dtype=self.dtype, param_dtype=self.param_dtype)
        if self.expand_ratio == 1:
            y = ConvNormAct(self.features, self.kernel_size, self.strides, self.padding,
                            act=self.act, zero_init_norm=self.zero_init_last, name="fused", **kw)(x, train)
            y = self._se(y, c_in)
        else:
            hidden = int(round(c_in * self.expand_ratio))
            y = ConvNormAct(hidden, self.kernel_size, self.strides, self.padding, act=self.act,
                            name="fused", **kw)(x, train)
            y = self._se(y, c_in)
            y = ConvNormAct(self.features, 1, 1, "VALID", act=None,
                            zero_init_norm=self.zero_init_last, name="project", **kw)(y, train)
        return self._residual(x, y, train)


def InvertedResidual(features: int, expand_ratio: float = 6.0, strides: int = 1, **kwargs) -> MBConv:  # noqa: N802
    """MobileNetV2 inverted residual: ``MBConv`` with a 3x3 depthwise conv, ReLU6 and no SE
    (PyTorch symmetric padding, as torchvision). Extra keyword arguments go to ``MBConv``."""
    kwargs.setdefault("act", nn.relu6)
    kwargs.setdefault("padding", "SYMMETRIC")
    kwargs.setdefault("kernel_size", 3)
    return MBConv(features, expand_ratio=expand_ratio, strides=strides, se_ratio=0.0, **kwargs)
