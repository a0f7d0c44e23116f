"""GoogLeNet / Inception v1 (Szegedy et al. 2015) with BatchNorm, as torchvision, without the
auxiliary classifiers."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.layers import (
    BatchNorm,
    ConvNormAct,
    Dropout,
    batch_norm_of,
    global_avg_pool,
    max_pool,
)
from jaxvision.models.features import sow_level
from jaxvision.models.registry import register

__all__ = ["GoogLeNet", "Inception"]

# (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj) per Inception module.
_INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


class Inception(nn.Module):
    """Four parallel branches concatenated on channels: 1x1 | 1x1-3x3 | 1x1-3x3 | maxpool-1x1.

    The "5x5" branch uses a 3x3 kernel, as torchvision's implementation (and its weights) do.
    Every conv is conv (no bias) -> BatchNorm -> ReLU. x (N, H, W, C) -> (N, H, W, sum of
    ch1x1, ch3x3, ch5x5, pool_proj).
    """

    ch1x1: int
    ch3x3red: int
    ch3x3: int
    ch5x5red: int
    ch5x5: int
    pool_proj: int
    norm: Any = BatchNorm
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        cna = functools.partial(ConvNormAct, norm=self.norm, padding=1, dtype=self.dtype,
                                param_dtype=self.param_dtype)
        b1 = cna(self.ch1x1, 1, padding=0, name="branch1")(x, train)
        b2 = cna(self.ch3x3red, 1, padding=0, name="branch2_reduce")(x, train)
        b2 = cna(self.ch3x3, 3, name="branch2")(b2, train)
        b3 = cna(self.ch5x5red, 1, padding=0, name="branch3_reduce")(x, train)
        b3 = cna(self.ch5x5, 3, name="branch3")(b3, train)
        b4 = max_pool(x, 3, 1, padding=1, ceil_mode=True)
        b4 = cna(self.pool_proj, 1, padding=0, name="branch4")(b4, train)
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class GoogLeNet(nn.Module):
    """Inception v1 with BatchNorm (eps 1e-3, as torchvision), PyTorch padding and ceil-mode
    pooling; global average pool, dropout, head (6,624,904 parameters).

    Input (N, H, W, 3) (224 by default). Output (N, num_classes) logits, or the 1024-d
    features when ``num_classes == 0``.
    """

    num_classes: int = 1000
    width_multiplier: float = 1.0
    drop_rate: float = 0.2
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-3
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        norm = batch_norm_of(self)
        kw = dict(norm=norm, dtype=self.dtype, param_dtype=self.param_dtype)
        w = _scaler(self.width_multiplier)
        # Feature levels: the last map of each resolution (strides 2, 4, 8, 16, 32).
        x = ConvNormAct(w(64), 7, 2, padding=3, name="conv1", **kw)(x, train)
        sow_level(x)
        x = max_pool(x, 3, 2, ceil_mode=True)
        x = ConvNormAct(w(64), 1, padding=0, name="conv2", **kw)(x, train)
        x = ConvNormAct(w(192), 3, padding=1, name="conv3", **kw)(x, train)
        sow_level(x)
        x = max_pool(x, 3, 2, ceil_mode=True)
        for name in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b"):
            if name == "4a":
                x = max_pool(x, 3, 2, ceil_mode=True)
            elif name == "5a":
                x = max_pool(x, 2, 2, ceil_mode=True)
            x = Inception(*map(w, _INCEPTION[name]), name=f"inception{name}", **kw)(x, train)
            if name in ("3b", "4e", "5b"):
                sow_level(x)
        x = global_avg_pool(x)
        x = Dropout(self.drop_rate)(x, train)
        if self.num_classes:
            x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype, name="head")(x)
        return x


def _scaler(multiplier: float):
    """Channel count c -> c * multiplier, which must be a whole number for every width."""

    def scale(c: int) -> int:
        scaled = c * multiplier
        if multiplier <= 0 or abs(scaled - round(scaled)) > 1e-6 or round(scaled) < 1:
            raise ValueError(f"width_multiplier {multiplier} gives {scaled} channels for a "
                             f"{c}-channel layer; use 1/k with k dividing 8 (all widths are multiples of 8)")
        return int(round(scaled))

    return scale


@register("googlenet", family="googlenet", default_resolution=224)
def googlenet(num_classes, dtype, param_dtype, *, drop_rate=0.2, bn_momentum=0.9, bn_epsilon=1e-3,
              bn_axis_name=None, width_multiplier=1.0):
    """GoogLeNet (Inception v1) with BatchNorm, no auxiliary heads (torchvision);
    ``width_multiplier`` scales every width (exactly: e.g. 1/8 for tiny test instances)."""
    return GoogLeNet(num_classes=num_classes, width_multiplier=width_multiplier,
                     drop_rate=drop_rate, bn_momentum=bn_momentum,
                     bn_epsilon=bn_epsilon, bn_axis_name=bn_axis_name, dtype=dtype,
                     param_dtype=param_dtype)
