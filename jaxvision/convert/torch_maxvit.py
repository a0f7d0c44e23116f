"""MaxViT state dicts -> jaxvision ``maxvit_*``: torchvision ``maxvit_t`` (layout
'torchvision') and timm's TF ports ``maxvit_{tiny,small,base}_tf_*`` (layout 'tf'; see
``models.maxvit``).

torchvision: ``stem.{0,1}``, ``blocks.{i}.layers.{j}.layers.{MBconv,window_attention,
grid_attention}``, ``classifier.{2,3,5}``. timm: ``stem.{conv1,norm1,conv2}``,
``stages.{i}.blocks.{j}.{conv,attn_block,attn_grid}``, ``head.{norm,pre_logits.fc,fc}``; its
``RelPosBiasTf`` tables (heads, 2w-1, 2w-1) are flipped into jaxvision's layout. Widths, depths,
head size and partition size are read from the state dict.
"""

from __future__ import annotations

from typing import Any

from jaxvision.convert.relative_position import relative_attention
from jaxvision.convert.torch_mapper import conv_norm, squeeze_excite

__all__ = ["map_maxvit", "pre_norm_mbconv", "timm_mbconv_names"]

# Source names of the parts of one MaxViT block: torchvision, timm.
_TV = dict(shortcut=("MBconv.proj.0", "MBconv.proj.1"), pre_norm="MBconv.layers.pre_norm",
           expand=("MBconv.layers.conv_a.0", "MBconv.layers.conv_a.1"),
           dw=("MBconv.layers.conv_b.0", "MBconv.layers.conv_b.1"),
           se="MBconv.layers.squeeze_excitation", project="MBconv.layers.conv_c",
           window="window_attention", grid="grid_attention")


def timm_mbconv_names(prefix: str) -> dict:
    """Source names of timm's ``MbConvBlock`` parts under ``prefix`` ('' or 'conv.')."""
    return dict(shortcut=(f"{prefix}shortcut.expand",), pre_norm=f"{prefix}pre_norm",
                expand=(f"{prefix}conv1_1x1", f"{prefix}norm1"),
                dw=(f"{prefix}conv2_kxk", f"{prefix}norm2"), se=f"{prefix}se",
                project=f"{prefix}conv3_1x1")


def pre_norm_mbconv(m, dst: str, src: str, names: dict) -> int:
    """Map one ``models.maxvit.PreNormMBConv``; returns its output width."""
    for shortcut in names["shortcut"]:
        if m.has(f"{src}.{shortcut}.weight"):
            m.conv(f"{dst}/shortcut", f"{src}.{shortcut}", bias=True)
    m.bn(f"{dst}/pre_norm", f"{src}.{names['pre_norm']}")
    for part in ("expand", "dw"):
        conv, bn = names[part]
        conv_norm(m, f"{dst}/{part}", f"{src}.{conv}", f"{src}.{bn}")
    squeeze_excite(m, dst, f"{src}.{names['se']}.fc1", f"{src}.{names['se']}.fc2")
    m.conv(f"{dst}/project", f"{src}.{names['project']}", bias=True)
    return int(m.sd[f"{src}.{names['project']}.weight"].shape[0])


def _partition_attention(m, dst: str, src: str, tv: bool) -> tuple[int, int]:
    if tv:
        m.ln(f"{dst}/norm1", f"{src}.attn_layer.0")
        heads, side = relative_attention(m, f"{dst}/attn", f"{src}.attn_layer.1", qkv="to_qkv",
                                         proj="merge")
        m.ln(f"{dst}/norm2", f"{src}.mlp_layer.0")
        m.linear(f"{dst}/mlp/fc1", f"{src}.mlp_layer.1")
        m.linear(f"{dst}/mlp/fc2", f"{src}.mlp_layer.3")
        return heads, side
    m.ln(f"{dst}/norm1", f"{src}.norm1")
    heads, side = relative_attention(m, f"{dst}/attn", f"{src}.attn",
                                     table="rel_pos.relative_position_bias_table", tf_table=True)
    m.ln(f"{dst}/norm2", f"{src}.norm2")
    m.linear(f"{dst}/mlp/fc1", f"{src}.mlp.fc1")
    m.linear(f"{dst}/mlp/fc2", f"{src}.mlp.fc2")
    return heads, side


def _blocks(m, tv: bool):
    """Map every block; returns (widths, depths, heads of the first block, partition side)."""
    widths, depths, first = [], [], None
    prefix = (lambda i, j: f"blocks.{i}.layers.{j}.layers") if tv else (lambda i, j: f"stages.{i}.blocks.{j}")
    probe = "MBconv.layers.pre_norm.weight" if tv else "conv.pre_norm.weight"
    i = 0
    while m.has(f"{prefix(i, 0)}.{probe}"):
        j = 0
        while m.has(f"{prefix(i, j)}.{probe}"):
            src, dst = prefix(i, j), f"stage{i + 1}_block{j + 1}"
            names = _TV if tv else timm_mbconv_names("conv.")
            width = pre_norm_mbconv(m, f"{dst}_mbconv", src, names)
            for part, source in (("window", "window_attention" if tv else "attn_block"),
                                 ("grid", "grid_attention" if tv else "attn_grid")):
                heads, side = _partition_attention(m, f"{dst}_{part}_attn", f"{src}.{source}", tv)
                first = first or (width, heads, side)
            j += 1
        widths.append(width)
        depths.append(j)
        i += 1
    return widths, depths, first


def map_maxvit(m, model_overrides: dict[str, Any]) -> int:
    """Map a torchvision or timm-TF MaxViT state dict held by ``m``; the architecture and layout
    read from it are added to ``model_overrides`` (given values win). Returns the number of
    classes."""
    tv = m.has("stem.0.0.weight")
    if not tv and not m.has("stem.conv1.weight"):
        raise ValueError("state dict has neither stem.0.0.weight (torchvision maxvit_t) nor "
                         "stem.conv1.weight (timm maxvit_*_tf); is it a MaxViT?")
    stem = ("stem.0.0", "stem.0.1", "stem.1.0") if tv else ("stem.conv1", "stem.norm1", "stem.conv2")
    m.conv("stem/conv1", stem[0], bias=m.has(f"{stem[0]}.bias"))
    m.bn("stem/norm1", stem[1])
    m.conv("stem/conv2", stem[2], bias=m.has(f"{stem[2]}.bias"))
    widths, depths, (width, heads, side) = _blocks(m, tv)
    head = ("classifier.2", "classifier.3", "classifier.5") if tv else ("head.norm", "head.pre_logits.fc", "head.fc")
    m.ln("head/norm", head[0])
    m.linear("head/pre_logits", head[1])
    num_classes = 0
    if m.has(f"{head[2]}.weight"):
        num_classes = int(m.sd[f"{head[2]}.weight"].shape[0])
        m.out.put("head/head/kernel", m.take(f"{head[2]}.weight").T)
        if m.has(f"{head[2]}.bias"):
            m.out.put("head/head/bias", m.take(f"{head[2]}.bias"))
    arch = {
        "stem_width": int(m.sd[f"{stem[2]}.weight"].shape[0]),
        "embed_dims": tuple(widths),
        "depths": tuple(depths),
        "head_dim": width // heads,
        "partition_size": side,
        "layout": "torchvision" if tv else "tf",
    }
    for k, v in arch.items():
        model_overrides.setdefault(k, v)
    return num_classes
