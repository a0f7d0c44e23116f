"""VGG (Simonyan & Zisserman 2015), configurations A/B/D/E = VGG-11/13/16/19, with and without
BatchNorm, as torchvision (convs keep their bias also in the BatchNorm variants, as there)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.layers import Conv, Dropout, adaptive_avg_pool, batch_norm_of, max_pool
from jaxvision.models.features import sow_level
from jaxvision.models.registry import register

__all__ = ["VGG", "VGG_CONFIGS"]

# Output channels of the 3x3 convs; "M" is a 2x2/2 max pool.
VGG_CONFIGS: dict[int, tuple[int | str, ...]] = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"),
}


class VGG(nn.Module):
    """VGG: 3x3 convs (bias; optional BatchNorm; ReLU) and 2x2 max pools, adaptive average pool
    to 7x7, then fc4096-ReLU-dropout-fc4096-ReLU-dropout-head.

    Input (N, H, W, 3), H, W >= 32 (224 by default). Output (N, num_classes) logits, or the
    4096-d features when ``num_classes == 0``.
    """

    config: Sequence[int | str]
    batch_norm: bool = False
    fc_width: int = 4096
    num_classes: int = 1000
    drop_rate: float = 0.5
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        norm = functools.partial(batch_norm_of(self), **kw)
        i = 0
        for v in self.config:
            if v == "M":  # feature levels: each map before its pool (timm), strides 1..16
                sow_level(x)
                x = max_pool(x, 2, 2)
                continue
            i += 1
            x = Conv(int(v), 3, padding=1, name=f"conv{i}", **kw)(x)
            if self.batch_norm:
                x = norm(name=f"norm{i}")(x, train)
            x = nn.relu(x)
        sow_level(x)  # the last pooled map, stride 32
        x = adaptive_avg_pool(x, 7)
        x = x.reshape(x.shape[0], -1)  # (N, 25088)
        x = nn.relu(nn.Dense(self.fc_width, name="fc1", **kw)(x))
        x = Dropout(self.drop_rate)(x, train)
        x = nn.relu(nn.Dense(self.fc_width, name="fc2", **kw)(x))
        x = Dropout(self.drop_rate)(x, train)
        if self.num_classes:
            x = nn.Dense(self.num_classes, name="head", **kw)(x)
        return x


def _register(depth: int, batch_norm: bool):
    name = f"vgg{depth}" + ("_bn" if batch_norm else "")
    spec = dict(family="vgg", default_resolution=224,
                description=f"VGG-{depth}{' with BatchNorm' if batch_norm else ''} (torchvision).")

    # ``config`` (conv widths and "M" pools) and ``fc_width`` change the architecture (torchvision
    # ``make_layers`` cfg and classifier width), e.g. for tiny test instances.
    if batch_norm:
        def builder(num_classes, dtype, param_dtype, *, drop_rate=0.5, bn_momentum=0.9,
                    bn_epsilon=1e-5, bn_axis_name=None, config=None, fc_width=4096):
            return VGG(tuple(config or VGG_CONFIGS[depth]), batch_norm=True, fc_width=fc_width,
                       num_classes=num_classes, drop_rate=drop_rate, bn_momentum=bn_momentum,
                       bn_epsilon=bn_epsilon, bn_axis_name=bn_axis_name, dtype=dtype,
                       param_dtype=param_dtype)
    else:
        def builder(num_classes, dtype, param_dtype, *, drop_rate=0.5, bn_axis_name=None,
                    config=None, fc_width=4096):
            del bn_axis_name  # no BatchNorm
            return VGG(tuple(config or VGG_CONFIGS[depth]), batch_norm=False, fc_width=fc_width,
                       num_classes=num_classes, drop_rate=drop_rate, dtype=dtype,
                       param_dtype=param_dtype)

    builder.__name__ = builder.__qualname__ = name
    return register(name, **spec)(builder)


for _depth in VGG_CONFIGS:
    for _bn in (False, True):
        _register(_depth, _bn)
