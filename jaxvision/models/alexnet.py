"""AlexNet (Krizhevsky et al. 2012), torchvision's single-tower variant ("One weird trick")."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.layers import Conv, Dropout, adaptive_avg_pool, max_pool
from jaxvision.models.features import sow_level
from jaxvision.models.registry import register

__all__ = ["AlexNet"]


class AlexNet(nn.Module):
    """Five convs (64, 192, 384, 256, 256; ReLU; 3x3/2 max pools), adaptive average pool to
    6x6, then dropout-fc4096-ReLU-dropout-fc4096-ReLU-head (61,100,840 parameters).

    Input (N, H, W, 3) with H, W >= 63 (224 by default); PyTorch padding. Output (N, num_classes)
    logits, or the 4096-d features when ``num_classes == 0``.
    """

    num_classes: int = 1000
    channels: tuple[int, ...] = (64, 192, 384, 256, 256)
    fc_width: int = 4096
    drop_rate: float = 0.5
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        # Feature levels: the last map of each resolution (strides 4, 8, 16, 32).
        c = self.channels
        x = nn.relu(Conv(c[0], 11, 4, padding=2, name="conv1", **kw)(x))
        sow_level(x)
        x = max_pool(x, 3, 2)
        x = nn.relu(Conv(c[1], 5, padding=2, name="conv2", **kw)(x))
        sow_level(x)
        x = max_pool(x, 3, 2)
        x = nn.relu(Conv(c[2], 3, padding=1, name="conv3", **kw)(x))
        x = nn.relu(Conv(c[3], 3, padding=1, name="conv4", **kw)(x))
        x = nn.relu(Conv(c[4], 3, padding=1, name="conv5", **kw)(x))
        sow_level(x)
        x = max_pool(x, 3, 2)
        sow_level(x)
        x = adaptive_avg_pool(x, 6)
        x = x.reshape(x.shape[0], -1)  # (N, 9216)
        x = Dropout(self.drop_rate)(x, train)
        x = nn.relu(nn.Dense(self.fc_width, name="fc1", **kw)(x))
        x = Dropout(self.drop_rate)(x, train)
        x = nn.relu(nn.Dense(self.fc_width, name="fc2", **kw)(x))
        if self.num_classes:
            x = nn.Dense(self.num_classes, name="head", **kw)(x)
        return x


@register("alexnet", family="alexnet", default_resolution=224)
def alexnet(num_classes, dtype, param_dtype, *, drop_rate=0.5, bn_axis_name=None,
            channels=(64, 192, 384, 256, 256), fc_width=4096):
    """AlexNet, torchvision single-tower variant (61.1M parameters); ``channels`` (the five
    convs) and ``fc_width`` change the architecture, e.g. for tiny test instances."""
    del bn_axis_name  # no BatchNorm
    if len(channels) != 5:
        raise ValueError(f"AlexNet has 5 convs: channels needs 5 widths, got {channels}")
    return AlexNet(num_classes=num_classes, channels=tuple(channels), fc_width=fc_width,
                   drop_rate=drop_rate, dtype=dtype, param_dtype=param_dtype)
