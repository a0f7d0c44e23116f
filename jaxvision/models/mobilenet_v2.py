"""MobileNetV2 (Sandler et al. 2018), as torchvision: inverted residuals with linear
bottlenecks, ReLU6, PyTorch padding, width multiplier with channels rounded to multiples of 8."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.layers import (
    ConvNormAct,
    Dropout,
    InvertedResidual,
    batch_norm_of,
    global_avg_pool,
)
from jaxvision.models.features import level_ends, sow_level
from jaxvision.models.registry import register

__all__ = ["MobileNetV2", "make_divisible"]

# (expand ratio t, output channels c, repeats n, first stride s), from the paper's Table 2.
_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` (at least ``min_value``), never going
    more than 10% below ``v`` (TF-slim / torchvision ``_make_divisible``)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class MobileNetV2(nn.Module):
    """MobileNetV2: 3x3/2 stem conv (32 * width) -> 17 inverted residuals -> 1x1 conv to
    1280 * max(1, width) -> global average pool -> dropout -> head (3,504,872 parameters at width 1).

    Input (N, H, W, 3) (224 by default). Output (N, num_classes) logits, or the pooled
    1280-d features when ``num_classes == 0``.
    """

    width_multiplier: float = 1.0
    num_classes: int = 1000
    drop_rate: float = 0.2
    drop_path_rate: float = 0.0
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_axis_name: str | None = None
    padding: str = "SYMMETRIC"  # "SYMMETRIC" = torchvision; "SAME" = TF/Keras (asymmetric)
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        norm = batch_norm_of(self)
        kw = dict(norm=norm, dtype=self.dtype, param_dtype=self.param_dtype)
        w = self.width_multiplier
        if self.padding not in ("SYMMETRIC", "SAME"):
            raise ValueError(f"padding must be 'SYMMETRIC' or 'SAME', got {self.padding!r}")
        stem_pad = 1 if self.padding == "SYMMETRIC" else "SAME"
        x = ConvNormAct(make_divisible(32 * w), 3, 2, padding=stem_pad, act=nn.relu6, name="stem",
                        **kw)(x, train)
        strides = [s if i == 0 else 1 for _, _, n, s in _SETTINGS for i in range(n)]
        ends = level_ends(strides)  # feature levels: strides 2, 4, 8, 16, 32
        total = len(strides)
        k = 0
        for t, c, n, s in _SETTINGS:
            for i in range(n):
                x = InvertedResidual(make_divisible(c * w), t, s if i == 0 else 1,
                                     drop_path_rate=self.drop_path_rate * k / total,
                                     padding=self.padding, name=f"block{k + 1}", **kw)(x, train)
                if k in ends:
                    sow_level(x)
                k += 1
        x = ConvNormAct(make_divisible(1280 * max(1.0, w)), 1, padding=0, act=nn.relu6,
                        name="head_conv", **kw)(x, train)
        x = global_avg_pool(x)
        x = Dropout(self.drop_rate)(x, train)
        if self.num_classes:
            x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype, name="head")(x)
        return x


@register("mobilenet_v2", family="mobilenet_v2", default_resolution=224)
def mobilenet_v2(num_classes, dtype, param_dtype, *, width_multiplier=1.0, drop_rate=0.2,
                 drop_path_rate=0.0, bn_momentum=0.9, bn_epsilon=1e-5, bn_axis_name=None,
                 padding="SYMMETRIC"):
    """MobileNetV2 (torchvision), width multiplier 1.0 by default; ``padding='SAME'`` pads as
    TF/Keras do (needed for Keras weights at resolutions other than 32k + 1)."""
    if width_multiplier <= 0:
        raise ValueError(f"width_multiplier must be > 0, got {width_multiplier}")
    return MobileNetV2(width_multiplier=width_multiplier, num_classes=num_classes,
                       drop_rate=drop_rate, drop_path_rate=drop_path_rate, bn_momentum=bn_momentum,
                       bn_epsilon=bn_epsilon, bn_axis_name=bn_axis_name, padding=padding,
                       dtype=dtype, param_dtype=param_dtype)
