"""torchvision / timm MobileNetV2, EfficientNet (incl. timm's TF ports) and timm MobileViT at
tiny widths."""

from __future__ import annotations

import importlib

from timm.models import byobnet as timm_byobnet
from timm.models import efficientnet as timm_efficientnet
from timm.models import mobilevit as timm_mobilevit

from .common import NUM_CLASSES, Fixture

tv_efficientnet = importlib.import_module("torchvision.models.efficientnet")
tv_mobilenetv2 = importlib.import_module("torchvision.models.mobilenetv2")
tv_mobilenetv3 = importlib.import_module("torchvision.models.mobilenetv3")



def mobilenet_v2() -> Fixture:
    m = tv_mobilenetv2.MobileNetV2(num_classes=NUM_CLASSES, width_mult=0.25)
    return Fixture(m, "torchvision", "torchvision.models.MobileNetV2(num_classes=10, width_mult=0.25)",
                   "mobilenet_v2", {"width_multiplier": 0.25}, 64)


def _mobilenet_v3(size: str) -> Fixture:
    arch = f"mobilenet_v3_{size}"
    settings, last = tv_mobilenetv3._mobilenet_v3_conf(arch, width_mult=0.25)
    m = tv_mobilenetv3.MobileNetV3(settings, last, num_classes=NUM_CLASSES)
    return Fixture(m, "torchvision", f"torchvision.models.mobilenetv3.MobileNetV3("
                   f"_mobilenet_v3_conf('{arch}', width_mult=0.25), num_classes=10)", arch,
                   {"width_multiplier": 0.25}, 64)


def mobilenet_v3_small() -> Fixture:
    return _mobilenet_v3("small")


def mobilenet_v3_large() -> Fixture:
    return _mobilenet_v3("large")


def mobilenet_v2_timm() -> Fixture:
    m = timm_efficientnet._gen_mobilenet_v2("mobilenetv2_035", 0.25, num_classes=NUM_CLASSES)
    return Fixture(m, "timm", "timm.models.efficientnet._gen_mobilenet_v2('mobilenetv2_035', 0.25, "
                   "num_classes=10)", "mobilenet_v2", {"width_multiplier": 0.25}, 64)


_EFF_TINY = {"width_coefficient": 0.25, "depth_coefficient": 0.25}


def efficientnet() -> Fixture:
    settings, last = tv_efficientnet._efficientnet_conf("efficientnet_b0", width_mult=0.25,
                                                        depth_mult=0.25)
    m = tv_efficientnet.EfficientNet(settings, 0.2, num_classes=NUM_CLASSES, last_channel=last)
    return Fixture(m, "torchvision", "torchvision.models.efficientnet.EfficientNet("
                   "_efficientnet_conf('efficientnet_b0', width_mult=0.25, depth_mult=0.25), 0.2, "
                   "num_classes=10)", "efficientnet_b0", dict(_EFF_TINY), 64)


def efficientnet_timm() -> Fixture:
    m = timm_efficientnet._gen_efficientnet("efficientnet_b0", channel_multiplier=0.25,
                                            depth_multiplier=0.25, num_classes=NUM_CLASSES)
    return Fixture(m, "timm", "timm.models.efficientnet._gen_efficientnet('efficientnet_b0', "
                   "channel_multiplier=0.25, depth_multiplier=0.25, num_classes=10)",
                   "efficientnet_b0", dict(_EFF_TINY), 64)


def tf_efficientnet_timm() -> Fixture:
    """timm's port of the TF weights: 'SAME' padding, BatchNorm eps 1e-3 (what
    ``tf_efficientnet_b0`` sets); an odd resolution makes the asymmetric padding matter."""
    m = timm_efficientnet._gen_efficientnet("tf_efficientnet_b0", channel_multiplier=0.25,
                                            depth_multiplier=0.25, num_classes=NUM_CLASSES,
                                            bn_eps=1e-3, pad_type="same")
    return Fixture(m, "timm", "timm.models.efficientnet._gen_efficientnet('tf_efficientnet_b0', "
                   "channel_multiplier=0.25, depth_multiplier=0.25, num_classes=10, bn_eps=1e-3, "
                   "pad_type='same')", "efficientnet_b0",
                   {**_EFF_TINY, "padding": "SAME", "bn_epsilon": 1e-3}, 66)


def mobilevit_timm() -> Fixture:
    """MobileViT with timm's block structure at tiny widths (2 heads' worth of 4: widths % 4)."""
    blocks = (
        timm_mobilevit._inverted_residual_block(d=1, c=8, s=1, br=2.0),
        timm_mobilevit._inverted_residual_block(d=2, c=8, s=2, br=2.0),
        timm_mobilevit._mobilevit_block(d=1, c=16, s=2, transformer_dim=16, transformer_depth=1,
                                      patch_size=2, br=2.0),
        timm_mobilevit._mobilevit_block(d=1, c=16, s=2, transformer_dim=24, transformer_depth=2,
                                      patch_size=2, br=2.0),
        timm_mobilevit._mobilevit_block(d=1, c=24, s=2, transformer_dim=16, transformer_depth=1,
                                      patch_size=2, br=2.0),
    )
    cfg = timm_byobnet.ByoModelCfg(blocks=blocks, stem_chs=8, stem_type="3x3", stem_pool="",
                                   downsample="", act_layer="silu", num_features=32)
    m = timm_byobnet.ByobNet(cfg, num_classes=NUM_CLASSES)
    config = {
        "stem": 8, "expand": 2.0, "final": 32,
        "stages": [["mv2", 8, 1, 1, None, None], ["mv2", 8, 2, 2, None, None],
                   ["vit", 16, 1, 2, 16, 1], ["vit", 16, 1, 2, 24, 2], ["vit", 24, 1, 2, 16, 1]],
    }
    return Fixture(m, "timm", "timm.models.byobnet.ByobNet(ByoModelCfg(mobilevit blocks "
                   f"{config['stages']}, stem_chs=8, num_features=32), num_classes=10)",
                   "mobilevit_xxs", {"config": config}, 64)
