"""timm MobileViTv2 at tiny widths."""

from __future__ import annotations

from timm.models import byobnet as timm_byobnet
from timm.models import mobilevit as timm_mobilevit

from .common import NUM_CLASSES, Fixture


def mobilevitv2_timm() -> Fixture:
    """timm's MobileViTv2 block structure (``_mobilevitv2_cfg``) at tiny widths. At 66 px the
    maps entering the v2 blocks are 9, 5 and 3 pixels wide: each is resized (bilinear, aligned
    corners) up to a multiple of the 2x2 patches, as the full-size model does at odd sizes."""
    blocks = (
        timm_mobilevit._inverted_residual_block(d=1, c=8, s=1, br=2.0),
        timm_mobilevit._inverted_residual_block(d=2, c=16, s=2, br=2.0),
        timm_mobilevit._mobilevitv2_block(d=1, c=16, s=2, transformer_depth=1),
        timm_mobilevit._mobilevitv2_block(d=1, c=24, s=2, transformer_depth=2),
        timm_mobilevit._mobilevitv2_block(d=1, c=32, s=2, transformer_depth=1),
    )
    cfg = timm_byobnet.ByoModelCfg(blocks=blocks, stem_chs=8, stem_type="3x3", stem_pool="",
                                   downsample="", act_layer="silu")
    m = timm_byobnet.ByobNet(cfg, num_classes=NUM_CLASSES)
    config = {
        "stem": 8, "expand": 2.0, "transformer_ratio": 0.5,
        "stages": [["mv2", 8, 1, 1, None], ["mv2", 16, 2, 2, None], ["vit", 16, 1, 2, 1],
                   ["vit", 24, 1, 2, 2], ["vit", 32, 1, 2, 1]],
    }
    return Fixture(m, "timm", "timm.models.byobnet.ByobNet(ByoModelCfg(mobilevitv2 blocks "
                   f"{config['stages']}, stem_chs=8), num_classes=10)", "mobilevitv2_050",
                   {"config": config}, 66)
