"""LeNet-5 (LeCun et al. 1998) for 1-channel 32x32 images (MNIST digits padded by 2 pixels)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.layers import Conv, max_pool
from jaxvision.models.features import sow_level
from jaxvision.models.registry import register

__all__ = ["LeNet5"]


class LeNet5(nn.Module):
    """conv5x5(6) -> pool -> conv5x5(16) -> pool -> fc120 -> fc84 -> head.

    The classic layout and widths (61,706 parameters at 10 classes) with the modern choices of
    ReLU and max pooling instead of scaled tanh and trainable subsampling. Input (N, 32, 32, C),
    C = 1 by default; the flatten fixes the resolution at 32x32. Output (N, num_classes) logits,
    or the 84-d features when ``num_classes == 0``.
    """

    num_classes: int = 10
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        if x.shape[1:3] != (32, 32):
            raise ValueError(f"LeNet-5 takes 32x32 images (pad 28x28 MNIST by 2), got {x.shape[1:3]}")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = max_pool(nn.relu(Conv(6, 5, padding="VALID", name="conv1", **kw)(x)), 2)
        sow_level(x)  # 14x14x6
        x = max_pool(nn.relu(Conv(16, 5, padding="VALID", name="conv2", **kw)(x)), 2)
        sow_level(x)  # 5x5x16
        x = x.reshape(x.shape[0], -1)  # (N, 5 * 5 * 16)
        x = nn.relu(nn.Dense(120, name="fc1", **kw)(x))
        x = nn.relu(nn.Dense(84, name="fc2", **kw)(x))
        if self.num_classes:
            x = nn.Dense(self.num_classes, name="head", **kw)(x)
        return x


@register("lenet5", family="lenet", default_resolution=32, in_channels=1, num_classes=10)
def lenet5(num_classes, dtype, param_dtype, *, bn_axis_name=None):
    """LeNet-5, 1x32x32 input, 10 classes by default (61,706 parameters)."""
    del bn_axis_name  # no BatchNorm
    return LeNet5(num_classes=num_classes, dtype=dtype, param_dtype=param_dtype)
