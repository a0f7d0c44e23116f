"""EfficientNetV2-S/M/L (Tan & Le 2021) as torchvision builds them (``efficientnet_v2_s/m/l``):
FusedMBConv stages (no squeeze-excite) then MBConv stages (SE with C_in / 4 channels), 3x3/2
stem, 1x1 head conv to 1280, global average pool, dropout, linear head; SiLU, BatchNorm epsilon
1e-3 (torchvision's ``partial(nn.BatchNorm2d, eps=1e-03)``; momentum 0.1 = Flax 0.9), PyTorch
symmetric padding, stochastic depth 0.2 growing linearly over the blocks (block k of N:
0.2 * k / N), He-normal fan-out convs and U(+-1/sqrt(classes)) head (torchvision init).

The network is ``models.efficientnet.EfficientNet`` with ``StageConfig(fused=True)`` stages;
``padding='SAME'`` gives timm's TF ports (``tf_efficientnetv2_*``).

Stage tables: torchvision ``_efficientnet_conf`` (expand ratio, kernel, stride, output channels,
repeats), equal to the paper's Table 4 (S) and the official code's M/L definitions.
"""

from __future__ import annotations

from jaxvision.models.efficientnet import EfficientNet, StageConfig
from jaxvision.models.registry import register

__all__ = ["EFFICIENTNET_V2_SIZES", "efficientnet_v2_stages"]


def _fused(e, k, s, c, n):
    return StageConfig(e, k, s, c, n, se_ratio=0.0, fused=True)


# name -> (stem channels, stages, dropout before the head, evaluation resolution (torchvision)).
EFFICIENTNET_V2_SIZES = {
    "efficientnet_v2_s": (24, (
        _fused(1, 3, 1, 24, 2), _fused(4, 3, 2, 48, 4), _fused(4, 3, 2, 64, 4),
        StageConfig(4, 3, 2, 128, 6), StageConfig(6, 3, 1, 160, 9), StageConfig(6, 3, 2, 256, 15),
    ), 0.2, 384),
    "efficientnet_v2_m": (24, (
        _fused(1, 3, 1, 24, 3), _fused(4, 3, 2, 48, 5), _fused(4, 3, 2, 80, 5),
        StageConfig(4, 3, 2, 160, 7), StageConfig(6, 3, 1, 176, 14), StageConfig(6, 3, 2, 304, 18),
        StageConfig(6, 3, 1, 512, 5),
    ), 0.3, 480),
    "efficientnet_v2_l": (32, (
        _fused(1, 3, 1, 32, 4), _fused(4, 3, 2, 64, 7), _fused(4, 3, 2, 96, 7),
        StageConfig(4, 3, 2, 192, 10), StageConfig(6, 3, 1, 224, 19), StageConfig(6, 3, 2, 384, 25),
        StageConfig(6, 3, 1, 640, 7),
    ), 0.4, 480),
}


def efficientnet_v2_stages(name: str) -> tuple[StageConfig, ...]:
    return EFFICIENTNET_V2_SIZES[name][1]


def _register(name: str):
    stem, stages, dropout, resolution = EFFICIENTNET_V2_SIZES[name]

    def builder(num_classes, dtype, param_dtype, *, stages=stages, stem_features=stem,
                head_features=1280, drop_rate=dropout, drop_path_rate=0.2, bn_momentum=0.9,
                bn_epsilon=1e-3, bn_axis_name=None, padding="SYMMETRIC"):
        return EfficientNet(
            stages=tuple(s if isinstance(s, StageConfig) else StageConfig(**s) for s in stages),
            stem_features=stem_features, head_features=head_features, resolution=resolution,
            num_classes=num_classes, drop_rate=drop_rate, drop_path_rate=drop_path_rate,
            bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, bn_axis_name=bn_axis_name,
            padding=padding, dtype=dtype, param_dtype=param_dtype)

    builder.__name__ = builder.__qualname__ = name
    label = f"EfficientNetV2-{name[-1].upper()}"
    register(name, family="efficientnet_v2", default_resolution=resolution,
             description=f"{label} (torchvision {name}), {resolution} px evaluation.")(builder)


for _name in EFFICIENTNET_V2_SIZES:
    _register(_name)
