"""EfficientNet-B0..B7 (Tan & Le 2019) by compound scaling, following the official TF code
(tensorflow/tpu models/official/efficientnet): channel rounding to multiples of 8, repeat
rounding up, drop-connect growing linearly to 0.2 over the blocks, BatchNorm epsilon 1e-3 and
momentum 0.99, swish, SE ratio 0.25 of the block input, TF-"SAME" padding.

``efficientnet(width, depth, resolution, dropout)`` is public: it builds any point of the
compound-scaling family (the registered B0..B7 are eight calls of it)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.layers import (
    ConvNormAct,
    Dropout,
    FusedMBConv,
    MBConv,
    batch_norm_of,
    global_avg_pool,
)
from jaxvision.layers.conv import Padding
from jaxvision.models.features import level_ends, sow_level
from jaxvision.models.registry import register

__all__ = [
    "EFFICIENTNET_B0_STAGES",
    "EFFICIENTNET_PARAMS",
    "EfficientNet",
    "StageConfig",
    "efficientnet",
    "round_filters",
    "round_repeats",
]


@dataclasses.dataclass(frozen=True)
class StageConfig:
    """One stage of MBConv blocks (``FusedMBConv`` ones when ``fused``, EfficientNetV2): the
    first block has ``strides``, the rest stride 1."""

    expand_ratio: int
    kernel_size: int
    strides: int
    features: int
    repeats: int
    se_ratio: float = 0.25
    fused: bool = False


# EfficientNet-B0 (the official blocks_args 'r1_k3_s11_e1_i32_o16_se0.25', ...).
EFFICIENTNET_B0_STAGES: tuple[StageConfig, ...] = (
    StageConfig(1, 3, 1, 16, 1),
    StageConfig(6, 3, 2, 24, 2),
    StageConfig(6, 5, 2, 40, 2),
    StageConfig(6, 3, 2, 80, 3),
    StageConfig(6, 5, 1, 112, 3),
    StageConfig(6, 5, 2, 192, 4),
    StageConfig(6, 3, 1, 320, 1),
)

# name -> (width coefficient, depth coefficient, resolution, dropout), official table.
EFFICIENTNET_PARAMS: dict[str, tuple[float, float, int, float]] = {
    "efficientnet_b0": (1.0, 1.0, 224, 0.2),
    "efficientnet_b1": (1.0, 1.1, 240, 0.2),
    "efficientnet_b2": (1.1, 1.2, 260, 0.3),
    "efficientnet_b3": (1.2, 1.4, 300, 0.3),
    "efficientnet_b4": (1.4, 1.8, 380, 0.4),
    "efficientnet_b5": (1.6, 2.2, 456, 0.4),
    "efficientnet_b6": (1.8, 2.6, 528, 0.5),
    "efficientnet_b7": (2.0, 3.1, 600, 0.5),
}


# U(-1/sqrt(fan_out), 1/sqrt(fan_out)): the official code's dense_kernel_initializer and
# torchvision's EfficientNet classifier init.
dense_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_out", "uniform")


def round_filters(filters: int, width_coefficient: float, divisor: int = 8) -> int:
    """Official channel rounding: ``filters * width`` to the nearest multiple of ``divisor``
    (at least ``divisor``), bumped up one step if that lost more than 10%."""
    f = filters * width_coefficient
    new = max(divisor, int(f + divisor / 2) // divisor * divisor)
    if new < 0.9 * f:
        new += divisor
    return int(new)


def round_repeats(repeats: int, depth_coefficient: float) -> int:
    """Official repeat rounding: ``ceil(repeats * depth)``."""
    return int(math.ceil(depth_coefficient * repeats))


class EfficientNet(nn.Module):
    """EfficientNet: 3x3/2 stem conv -> MBConv stages -> 1x1 head conv -> global average pool ->
    dropout -> head. Build it with ``efficientnet(...)`` (which scales the stages).

    Attributes:
      stages: already scaled ``StageConfig`` s.
      stem_features / head_features: channels of the stem and the 1x1 head conv.
      resolution: the input resolution this point of the family was scaled for (informational:
        the network is fully convolutional).
      drop_path_rate: drop-connect rate of the last block; block ``i`` of ``N`` uses
        ``drop_path_rate * i / N`` (official code).
    Input (N, H, W, 3). Output (N, num_classes) logits, or the pooled ``head_features`` when
    ``num_classes == 0``.
    """

    stages: Sequence[StageConfig] = EFFICIENTNET_B0_STAGES
    stem_features: int = 32
    head_features: int = 1280
    resolution: int = 224
    num_classes: int = 1000
    drop_rate: float = 0.2
    drop_path_rate: float = 0.2
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    bn_axis_name: str | None = None
    padding: Padding = "SAME"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        norm = batch_norm_of(self)
        kw = dict(norm=norm, dtype=self.dtype, param_dtype=self.param_dtype)
        x = ConvNormAct(self.stem_features, 3, 2, padding=self.padding, act=nn.swish, name="stem",
                        **kw)(x, train)
        total = sum(s.repeats for s in self.stages)
        ends = level_ends([s.strides for s in self.stages])  # feature levels: strides 2..32
        k = 0
        for i, s in enumerate(self.stages):
            block = FusedMBConv if s.fused else MBConv
            for j in range(s.repeats):
                x = block(
                    s.features,
                    expand_ratio=s.expand_ratio,
                    kernel_size=s.kernel_size,
                    strides=s.strides if j == 0 else 1,
                    se_ratio=s.se_ratio,
                    act=nn.swish,
                    padding=self.padding,
                    drop_path_rate=self.drop_path_rate * k / total,
                    name=f"stage{i + 1}_block{j + 1}",
                    **kw,
                )(x, train)
                k += 1
            if i in ends:
                sow_level(x)
        x = ConvNormAct(self.head_features, 1, padding="VALID", act=nn.swish, name="head_conv",
                        **kw)(x, train)
        x = global_avg_pool(x)
        x = Dropout(self.drop_rate)(x, train)
        if self.num_classes:
            x = nn.Dense(self.num_classes, kernel_init=dense_init, dtype=self.dtype,
                         param_dtype=self.param_dtype, name="head")(x)
        return x


def efficientnet(
    width_coefficient: float,
    depth_coefficient: float,
    resolution: int,
    dropout_rate: float,
    *,
    num_classes: int = 1000,
    drop_path_rate: float = 0.2,
    bn_momentum: float = 0.99,
    bn_epsilon: float = 1e-3,
    bn_axis_name: str | None = None,
    padding: Padding = "SAME",
    depth_divisor: int = 8,
    base_stages: Sequence[StageConfig] = EFFICIENTNET_B0_STAGES,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
) -> EfficientNet:
    """Compound-scaled EfficientNet: any (width, depth, resolution, dropout) point.

    Channels of the stem (32), every stage and the head conv (1280) are multiplied by
    ``width_coefficient`` and rounded with ``round_filters`` (divisor ``depth_divisor``); block
    repeats are multiplied by ``depth_coefficient`` and rounded up. ``resolution`` is recorded on
    the module (feed images of that size); ``dropout_rate`` is the dropout before the head.

    Example, a custom phi = 0.5 with the paper's alpha=1.2, beta=1.1, gamma=1.15::

        model = efficientnet(1.1 ** 0.5, 1.2 ** 0.5, int(224 * 1.15 ** 0.5), 0.2, num_classes=10)
    """
    if width_coefficient <= 0 or depth_coefficient <= 0:
        raise ValueError(
            f"width and depth coefficients must be > 0, got {width_coefficient}, {depth_coefficient}"
        )
    stages = tuple(
        dataclasses.replace(
            s,
            features=round_filters(s.features, width_coefficient, depth_divisor),
            repeats=round_repeats(s.repeats, depth_coefficient),
        )
        for s in base_stages
    )
    return EfficientNet(
        stages=stages,
        stem_features=round_filters(32, width_coefficient, depth_divisor),
        head_features=round_filters(1280, width_coefficient, depth_divisor),
        resolution=int(resolution),
        num_classes=num_classes,
        drop_rate=dropout_rate,
        drop_path_rate=drop_path_rate,
        bn_momentum=bn_momentum,
        bn_epsilon=bn_epsilon,
        bn_axis_name=bn_axis_name,
        padding=padding,
        dtype=dtype,
        param_dtype=param_dtype,
    )


def _register(name: str):
    width, depth, res, dropout = EFFICIENTNET_PARAMS[name]

    def builder(num_classes, dtype, param_dtype, *, drop_rate=dropout, drop_path_rate=0.2,
                bn_momentum=0.99, bn_epsilon=1e-3, bn_axis_name=None, padding="SAME",
                width_coefficient=width, depth_coefficient=depth):
        return efficientnet(width_coefficient, depth_coefficient, res, drop_rate,
                            num_classes=num_classes,
                            drop_path_rate=drop_path_rate, bn_momentum=bn_momentum,
                            bn_epsilon=bn_epsilon, bn_axis_name=bn_axis_name, padding=padding,
                            dtype=dtype, param_dtype=param_dtype)

    builder.__name__ = builder.__qualname__ = name
    label = name.replace("efficientnet_b", "EfficientNet-B")
    return register(name, family="efficientnet", default_resolution=res,
                    description=f"{label} (width {width}, depth {depth}, {res}px, dropout {dropout}).")(builder)


for _name in EFFICIENTNET_PARAMS:
    _register(_name)
