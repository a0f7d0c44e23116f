"""timm EfficientFormer at tiny widths.

The attention bias table is fixed at 7x7 tokens (timm, as the paper's 224 px models), so the last
stage must be 7x7: two of the three downsampling stages are kept, at 112 px.
"""

from __future__ import annotations

from timm.models import efficientformer as timm_efficientformer

from .common import NUM_CLASSES, Fixture


def _efficientformer(depths, dims, num_vit, downsamples) -> Fixture:
    m = timm_efficientformer.EfficientFormer(depths=depths, embed_dims=dims, num_vit=num_vit,
                                             downsamples=downsamples, num_classes=NUM_CLASSES)
    config = {"depths": list(depths), "widths": list(dims), "num_vit": num_vit,
              "downsamples": list(downsamples)}
    return Fixture(m, "timm", f"timm.models.efficientformer.EfficientFormer(depths={depths}, "
                   f"embed_dims={dims}, num_vit={num_vit}, downsamples={downsamples}, "
                   "num_classes=10)", "efficientformer_l1", {"config": config, "image_size": 112}, 112)


def efficientformer_timm() -> Fixture:
    """Meta4D blocks, then the flattening, then one Meta3D block (as L1/L3)."""
    return _efficientformer((1, 1, 1, 2), (8, 8, 16, 24), 1, (False, False, True, True))


def efficientformer_all_vit_timm() -> Fixture:
    """A last stage of Meta3D blocks only (flattened before its first block, as L7)."""
    return _efficientformer((1, 1, 1, 2), (8, 16, 16, 24), 2, (False, True, False, True))
