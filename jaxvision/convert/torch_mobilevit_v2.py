"""timm ``mobilevitv2_*`` state dicts (ByobNet) -> ``models.mobilevit_v2``.

``stem.{conv,bn}``; ``stages.{i}.{j}``: inverted residuals (as MobileViT v1, see
``torch_mobilevit``) and MobileViTv2 blocks: ``conv_kxk`` (depthwise, ``conv`` + ``bn``),
``conv_1x1``, ``transformer.{k}`` (``norm1``, ``attn.qkv_proj``, ``attn.out_proj``, ``norm2``,
``mlp.fc1``, ``mlp.fc2``: GroupNorm1 and 1x1 convs, which become Dense layers on the tokens),
``norm``, ``conv_proj``; ``head.fc`` (no final conv). Inputs in [0, 1] (mean 0, std 1).
"""

from __future__ import annotations

from jaxvision.convert.torch_mapper import StateDictMapper, classifier
from jaxvision.convert.torch_mobilevit import cna, map_byob_stages

__all__ = ["map_mobilevit_v2"]


def _pointwise(m: StateDictMapper, dst: str, src: str) -> None:
    """A 1x1 ``nn.Conv2d`` with bias (out, in, 1, 1) onto a Dense kernel (in, out)."""
    m.out.put(f"{dst}/kernel", m.take(f"{src}.weight")[:, :, 0, 0].T)
    m.out.put(f"{dst}/bias", m.take(f"{src}.bias"))


def _mobilevit_v2_block(m: StateDictMapper, dst: str, src: str) -> None:
    cna(m, f"{dst}/conv_kxk", f"{src}.conv_kxk")
    m.conv(f"{dst}/conv_1x1", f"{src}.conv_1x1")
    k = 0
    while m.has(f"{src}.transformer.{k}.norm1.weight"):
        s, d = f"{src}.transformer.{k}", f"{dst}/transformer_{k}"
        m.ln(f"{d}/norm1", f"{s}.norm1")
        _pointwise(m, f"{d}/attn/qkv", f"{s}.attn.qkv_proj")
        _pointwise(m, f"{d}/attn/out_proj", f"{s}.attn.out_proj")
        m.ln(f"{d}/norm2", f"{s}.norm2")
        _pointwise(m, f"{d}/fc1", f"{s}.mlp.fc1")
        _pointwise(m, f"{d}/fc2", f"{s}.mlp.fc2")
        k += 1
    m.ln(f"{dst}/norm", f"{src}.norm")
    cna(m, f"{dst}/conv_proj", f"{src}.conv_proj")


def map_mobilevit_v2(m: StateDictMapper, overrides=None) -> int:
    cna(m, "stem", "stem")
    map_byob_stages(m, _mobilevit_v2_block)
    return classifier(m, "head.fc")
