"""DenseNet (Huang et al. 2017), DenseNet-BC as torchvision: pre-activation dense layers
(norm -> ReLU -> 1x1 -> norm -> ReLU -> 3x3) concatenated, transitions halve the channels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.layers import (
    BatchNorm,
    Conv,
    Dropout,
    avg_pool,
    batch_norm_of,
    global_avg_pool,
    max_pool,
)
from jaxvision.models.features import sow_level
from jaxvision.models.registry import register

__all__ = ["DenseLayer", "DenseNet"]


class DenseLayer(nn.Module):
    """Bottleneck dense layer: norm -> ReLU -> 1x1 (bn_size * growth_rate) -> norm -> ReLU ->
    3x3 (growth_rate). Returns only the new features: x (N, H, W, C) -> (N, H, W, growth_rate)."""

    growth_rate: int
    bn_size: int = 4
    norm: Any = BatchNorm
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        y = nn.relu(self.norm(name="norm1", **kw)(x, train))
        y = Conv(self.bn_size * self.growth_rate, 1, use_bias=False, name="conv1", **kw)(y)
        y = nn.relu(self.norm(name="norm2", **kw)(y, train))
        return Conv(self.growth_rate, 3, padding=1, use_bias=False, name="conv2", **kw)(y)


class DenseNet(nn.Module):
    """DenseNet-BC: stem 7x7/2 conv (no bias) -> norm -> ReLU -> 3x3/2 max pool; dense blocks
    separated by transitions (norm -> ReLU -> 1x1 conv to half the channels -> 2x2/2 average pool);
    final norm -> ReLU -> global average pool -> dropout -> head.

    Input (N, H, W, 3) (224 by default). Output (N, num_classes) logits, or the pooled features
    (1024 for DenseNet-121) when ``num_classes == 0``.
    """

    block_config: Sequence[int] = (6, 12, 24, 16)
    growth_rate: int = 32
    num_init_features: int = 64
    bn_size: int = 4
    num_classes: int = 1000
    drop_rate: float = 0.0
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        norm = batch_norm_of(self)
        x = Conv(self.num_init_features, 7, 2, padding=3, use_bias=False, name="conv0", **kw)(x)
        x = nn.relu(norm(name="norm0", **kw)(x, train))
        sow_level(x)  # feature levels: the stem, then each dense block (as timm), strides 2..32
        x = max_pool(x, 3, 2, padding=1)
        for b, n in enumerate(self.block_config):
            for i in range(n):
                y = DenseLayer(self.growth_rate, self.bn_size, norm=norm,
                               name=f"block{b + 1}_layer{i + 1}", **kw)(x, train)
                x = jnp.concatenate([x, y], axis=-1)
            if b != len(self.block_config) - 1:
                sow_level(x)
                x = nn.relu(norm(name=f"transition{b + 1}_norm", **kw)(x, train))
                x = Conv(x.shape[-1] // 2, 1, use_bias=False, name=f"transition{b + 1}_conv", **kw)(x)
                x = avg_pool(x, 2, 2)
        x = nn.relu(norm(name="norm_final", **kw)(x, train))
        sow_level(x)
        x = global_avg_pool(x)
        x = Dropout(self.drop_rate)(x, train)
        if self.num_classes:
            x = nn.Dense(self.num_classes, name="head", **kw)(x)
        return x


@register("densenet121", family="densenet", default_resolution=224)
def densenet121(num_classes, dtype, param_dtype, *, drop_rate=0.0, bn_momentum=0.9,
                bn_epsilon=1e-5, bn_axis_name=None, growth_rate=32, block_config=(6, 12, 24, 16),
                num_init_features=64, bn_size=4):
    """DenseNet-121 (growth 32, blocks 6-12-24-16, torchvision); the architecture options are
    torchvision ``DenseNet``'s."""
    return DenseNet(tuple(block_config), growth_rate, num_init_features, bn_size,
                    num_classes=num_classes, drop_rate=drop_rate,
                    bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, bn_axis_name=bn_axis_name,
                    dtype=dtype, param_dtype=param_dtype)
