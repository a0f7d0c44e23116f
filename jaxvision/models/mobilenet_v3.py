"""MobileNetV3 (Howard et al. 2019), Large and Small, as torchvision's ``mobilenet_v3_large`` /
``mobilenet_v3_small``: inverted residuals with explicit expansion widths, squeeze-excite (ReLU,
hard-sigmoid gate, reduced to ``make_divisible(expanded / 4)``) on some blocks, ReLU or
hard-swish per block, a 1x1 conv to 6x the last width, then Linear -> hard-swish -> dropout ->
head. BatchNorm eps 1e-3, momentum 0.01 (Flax 0.99); PyTorch symmetric padding. Parameter counts
at 1000 classes: large 5,483,032, small 2,542,856 (torchvision 0.29, ``weights=None``).

Parameters: ``stem``, ``block{k}`` (``MBConv``: [``expand``], ``dw``, [``se``], ``project``),
``head_conv``, ``pre_logits`` (Dense), ``head`` (Dense).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.layers import ConvNormAct, Dropout, MBConv, batch_norm_of, global_avg_pool
from jaxvision.models.features import level_ends, sow_level
from jaxvision.models.mobilenet_v2 import make_divisible
from jaxvision.models.registry import register

__all__ = ["MOBILENET_V3_CONFIGS", "MobileNetV3"]

# (kernel, expanded width, output width, squeeze-excite, activation 'RE'|'HS', stride) per block,
# and the width of the Linear before the head: torchvision ``_mobilenet_v3_conf`` (paper
# Tables 1 and 2).
MOBILENET_V3_CONFIGS = {
    "large": dict(
        blocks=(
            (3, 16, 16, False, "RE", 1), (3, 64, 24, False, "RE", 2), (3, 72, 24, False, "RE", 1),
            (5, 72, 40, True, "RE", 2), (5, 120, 40, True, "RE", 1), (5, 120, 40, True, "RE", 1),
            (3, 240, 80, False, "HS", 2), (3, 200, 80, False, "HS", 1),
            (3, 184, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1),
            (3, 480, 112, True, "HS", 1), (3, 672, 112, True, "HS", 1),
            (5, 672, 160, True, "HS", 2), (5, 960, 160, True, "HS", 1),
            (5, 960, 160, True, "HS", 1),
        ),
        last_channel=1280,
    ),
    "small": dict(
        blocks=(
            (3, 16, 16, True, "RE", 2), (3, 72, 24, False, "RE", 2), (3, 88, 24, False, "RE", 1),
            (5, 96, 40, True, "HS", 2), (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1),
            (5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1),
            (5, 288, 96, True, "HS", 2), (5, 576, 96, True, "HS", 1), (5, 576, 96, True, "HS", 1),
        ),
        last_channel=1024,
    ),
}
_ACTIVATIONS = {"RE": nn.relu, "HS": nn.hard_swish}
_STEM = 16


class MobileNetV3(nn.Module):
    """MobileNetV3: (N, H, W, 3) -> logits (N, num_classes), or the ``last_channel``-wide
    pre-logit features (after the hard-swish) when ``num_classes == 0``.

    Attributes:
      blocks: ``MOBILENET_V3_CONFIGS[...]['blocks']`` rows.
      last_channel: width of the Linear before the head (scaled by ``width_multiplier``).
      width_multiplier: every width times this, rounded to multiples of 8 (torchvision).
      drop_rate: dropout before the head (0.2 in torchvision); drop_path_rate: stochastic depth
        of the last block (linear over blocks, as timm).
    """

    blocks: Sequence[tuple]
    last_channel: int
    width_multiplier: float = 1.0
    num_classes: int = 1000
    drop_rate: float = 0.2
    drop_path_rate: float = 0.0
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        w = lambda c: make_divisible(c * self.width_multiplier)  # noqa: E731
        kw = dict(norm=batch_norm_of(self), dtype=self.dtype, param_dtype=self.param_dtype)
        x = ConvNormAct(w(_STEM), 3, 2, padding=1, act=nn.hard_swish, name="stem", **kw)(x, train)
        # Feature levels: the last map of each stride 2..32 (the stem's when block 1 strides).
        if self.blocks[0][-1] > 1:
            sow_level(x)
        ends = level_ends([row[-1] for row in self.blocks])
        for k, (kernel, expanded, out, se, act, stride) in enumerate(self.blocks):
            x = MBConv(
                w(out), kernel_size=kernel, strides=stride, hidden_features=w(expanded),
                se_features=make_divisible(w(expanded) // 4) if se else None,
                act=_ACTIVATIONS[act], se_act=nn.relu, se_gate=nn.hard_sigmoid,
                padding="SYMMETRIC", drop_path_rate=self.drop_path_rate * k / len(self.blocks),
                name=f"block{k + 1}", **kw,
            )(x, train)
            if k in ends:
                sow_level(x)
        x = ConvNormAct(6 * x.shape[-1], 1, padding=0, act=nn.hard_swish, name="head_conv",
                        **kw)(x, train)
        x = global_avg_pool(x)
        dense = dict(dtype=self.dtype, param_dtype=self.param_dtype,
                     kernel_init=nn.initializers.normal(0.01))  # torchvision's Linear init
        x = nn.hard_swish(nn.Dense(w(self.last_channel), name="pre_logits", **dense)(x))
        if self.num_classes == 0:
            return x
        x = Dropout(self.drop_rate)(x, train)
        return nn.Dense(self.num_classes, name="head", **dense)(x)


def _register(size: str):
    name = f"mobilenet_v3_{size}"
    cfg = MOBILENET_V3_CONFIGS[size]

    def builder(num_classes, dtype, param_dtype, *, width_multiplier=1.0, drop_rate=0.2,
                drop_path_rate=0.0, bn_momentum=0.99, bn_epsilon=1e-3, bn_axis_name=None):
        if width_multiplier <= 0:
            raise ValueError(f"width_multiplier must be > 0, got {width_multiplier}")
        return MobileNetV3(cfg["blocks"], cfg["last_channel"], width_multiplier=width_multiplier,
                           num_classes=num_classes, drop_rate=drop_rate,
                           drop_path_rate=drop_path_rate, bn_momentum=bn_momentum,
                           bn_epsilon=bn_epsilon, bn_axis_name=bn_axis_name, dtype=dtype,
                           param_dtype=param_dtype)

    builder.__name__ = builder.__qualname__ = name
    register(name, family="mobilenet_v3", default_resolution=224,
             description=f"MobileNetV3-{size.capitalize()} (torchvision mobilenet_v3_{size}).")(builder)


for _size in MOBILENET_V3_CONFIGS:
    _register(_size)
