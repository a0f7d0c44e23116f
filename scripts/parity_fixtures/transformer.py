"""timm ViT and the ViT paper's ResNet hybrids (timm ``vit_*_r26_s32``/``r50_s16`` structure) at
tiny widths."""

from __future__ import annotations

import functools

from timm.layers import StdConv2dSame
from timm.models import deit as timm_deit
from timm.models import resnetv2 as timm_resnetv2
from timm.models import vision_transformer as timm_vit
from timm.models import vision_transformer_hybrid as timm_hybrid

from .common import NUM_CLASSES, Fixture

_VIT_TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "mlp_dim": 64}


def vit_timm() -> Fixture:
    m = timm_vit.VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                                   mlp_ratio=2.0, num_classes=NUM_CLASSES)
    return Fixture(m, "timm", "timm.models.vision_transformer.VisionTransformer(img_size=32, "
                   "patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=10)",
                   "vit_ti16", {**_VIT_TINY, "patch_size": 8, "image_size": 32}, 32)


def deit_distilled_timm() -> Fixture:
    m = timm_deit.VisionTransformerDistilled(img_size=32, patch_size=8, embed_dim=32, depth=2,
                                             num_heads=2, mlp_ratio=2.0, num_classes=NUM_CLASSES)
    return Fixture(m, "timm", "timm.models.deit.VisionTransformerDistilled(img_size=32, "
                   "patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=10)",
                   "deit_s_distilled", {**_VIT_TINY, "patch_size": 8, "image_size": 32}, 32)


def _hybrid(layers, channels, name, jv_name) -> Fixture:
    """timm's ``_resnetv2`` backbone (StdConv2dSame eps 1e-8, GroupNorm(32) eps 1e-5, 'same'
    stem, no pre-activation) at tiny widths, 1x1 patches of its map, a ViT on top."""
    backbone = timm_resnetv2.ResNetV2(
        layers=layers, channels=channels, stem_chs=channels[0] // 4, num_classes=0,
        global_pool="", preact=False, stem_type="same",
        conv_layer=functools.partial(StdConv2dSame, eps=1e-8))
    m = timm_vit.VisionTransformer(
        img_size=64, patch_size=1, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0,
        num_classes=NUM_CLASSES,
        embed_layer=functools.partial(timm_hybrid.HybridEmbed, backbone=backbone))
    return Fixture(m, "timm", f"timm VisionTransformer(HybridEmbed(ResNetV2(layers={layers}, "
                   f"channels={channels}, stem_chs={channels[0] // 4}, preact=False, "
                   "stem_type='same', conv_layer=StdConv2dSame(eps=1e-8))), img_size=64, "
                   f"embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=10) as {name}",
                   jv_name, {**_VIT_TINY, "stage_sizes": list(layers), "width": channels[0] // 4,
                             "image_size": 64, "weight_standardization": "timm"}, 64)


def hybrid_r26_timm() -> Fixture:
    return _hybrid((1, 1), (128, 256), "vit_small_r26_s32_224", "r26_vit_s32")
