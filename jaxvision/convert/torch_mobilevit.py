"""timm ``mobilevit_{xxs,xs,s}`` state dicts (ByobNet) -> ``models.mobilevit``.

``stem.{conv,bn}``; ``stages.{i}.{j}``: inverted residuals (``conv1_1x1``, ``conv2_kxk``
(depthwise), ``conv3_1x1``, each ``conv`` + ``bn``) and MobileViT blocks (``conv_kxk``,
``conv_1x1``, ``transformer.{k}`` timm ``Block``s, ``norm``, ``conv_proj``, ``conv_fusion``);
``final_conv``; ``head.fc``. timm feeds MobileViT pixels in [0, 1] (mean 0, std 1).
"""

from __future__ import annotations

from jaxvision.convert.torch_mapper import StateDictMapper, classifier, conv_norm, encoder_block

__all__ = ["cna", "map_byob_stages", "map_mobilevit"]

_HEADS = 4  # timm MobileVitBlock(num_heads=4), as models.mobilevit


def cna(m, dst, src):
    """A timm ConvNormAct (``{src}.conv``, ``{src}.bn``) onto ``{dst}/conv``, ``{dst}/norm``."""
    conv_norm(m, dst, f"{src}.conv", f"{src}.bn")


def _mobilevit_block(m: StateDictMapper, dst: str, src: str) -> None:
    cna(m, f"{dst}/conv_kxk", f"{src}.conv_kxk")
    m.conv(f"{dst}/conv_1x1", f"{src}.conv_1x1")
    k = 0
    while m.has(f"{src}.transformer.{k}.norm1.weight"):
        encoder_block(m, f"{dst}/transformer/block_{k}", f"{src}.transformer.{k}", _HEADS)
        k += 1
    m.ln(f"{dst}/transformer/norm", f"{src}.norm")
    cna(m, f"{dst}/conv_proj", f"{src}.conv_proj")
    cna(m, f"{dst}/conv_fusion", f"{src}.conv_fusion")


def map_byob_stages(m: StateDictMapper, transformer_block) -> None:
    """ByobNet ``stages.{i}.{j}`` of a MobileViT: inverted residuals onto ``MBConv`` names and
    the blocks with a ``conv_kxk`` through ``transformer_block(m, dst, src)``."""
    i = 0
    while m.has(f"stages.{i}.0.conv1_1x1.conv.weight"):
        j = 0
        while m.has(f"stages.{i}.{j}.conv1_1x1.conv.weight") or m.has(f"stages.{i}.{j}.conv_kxk.conv.weight"):
            src, dst = f"stages.{i}.{j}", f"stages_{i}_{j}"
            if m.has(f"{src}.conv_kxk.conv.weight"):
                transformer_block(m, dst, src)
            else:
                cna(m, f"{dst}/expand", f"{src}.conv1_1x1")
                cna(m, f"{dst}/dw", f"{src}.conv2_kxk")
                cna(m, f"{dst}/project", f"{src}.conv3_1x1")
            j += 1
        i += 1


def map_mobilevit(m: StateDictMapper, overrides=None) -> int:
    cna(m, "stem", "stem")
    map_byob_stages(m, _mobilevit_block)
    cna(m, "final_conv", "final_conv")
    return classifier(m, "head.fc")
