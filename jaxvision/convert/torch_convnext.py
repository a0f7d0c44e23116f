"""torchvision ``convnext_{tiny,small,base,large}`` state dicts -> ``models.convnext``.

``features.0.{0,1}`` (stem conv, LayerNorm2d); ``features.{2s-1}.{j}``: blocks (``block.0``
depthwise conv, ``block.2`` LayerNorm, ``block.3``/``block.5`` Linear, ``layer_scale`` (C, 1, 1));
``features.{2s}.{0,1}``: downsampling LayerNorm2d + conv; ``classifier.0`` (LayerNorm2d),
``classifier.2`` (Linear). Other widths/depths than the named size's: pass ``dims``/``depths``.
"""

from __future__ import annotations

from jaxvision.convert.torch_mapper import StateDictMapper, classifier

__all__ = ["map_convnext"]


def map_convnext(m: StateDictMapper, overrides=None) -> int:
    m.conv("stem_conv", "features.0.0", bias=True)
    m.ln("stem_norm", "features.0.1")
    stage = 1
    while m.has(f"features.{2 * stage - 1}.0.block.0.weight"):
        src = f"features.{2 * stage - 1}"
        if stage > 1:
            down = f"features.{2 * stage - 2}"
            m.ln(f"stage{stage}_downsample_norm", f"{down}.0")
            m.conv(f"stage{stage}_downsample_conv", f"{down}.1", bias=True)
        j = 0
        while m.has(f"{src}.{j}.block.0.weight"):
            dst = f"stage{stage}_block{j + 1}"
            m.conv(f"{dst}/dwconv", f"{src}.{j}.block.0", bias=True)
            m.ln(f"{dst}/norm", f"{src}.{j}.block.2")
            m.linear(f"{dst}/fc1", f"{src}.{j}.block.3")
            m.linear(f"{dst}/fc2", f"{src}.{j}.block.5")
            m.out.put(f"{dst}/layer_scale", m.take(f"{src}.{j}.layer_scale").reshape(-1))
            j += 1
        stage += 1
    m.ln("head_norm", "classifier.0")
    return classifier(m, "classifier.2")

