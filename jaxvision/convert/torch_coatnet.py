"""timm CoAtNet state dicts (``coatnet_{0..3}_224`` and any C/T stage layout of timm's
``MaxxVit`` with the default conv/transformer configs) -> jaxvision ``coatnet_*``.

timm names: ``stem.{conv1,norm1,conv2}``; MBConv blocks ``stages.{i}.blocks.{j}.{shortcut.expand,
pre_norm,conv1_1x1,norm1,conv2_kxk,norm2,se.fc1,se.fc2,conv3_1x1}``; Transformer blocks
``...{shortcut.expand, norm1[.norm], attn.{qkv,proj} (1x1 convs, qkv rows per head (q|k|v)),
attn.rel_pos.relative_position_bias_table, norm2, mlp.fc1, mlp.fc2}``; ``head.{norm,
pre_logits.fc,fc}``. The relative position tables cover the whole feature map, so they fix the
input resolution: ``stored_resolution`` reads it from them.
"""

from __future__ import annotations

from typing import Any

from jaxvision.convert.relative_position import relative_attention, window_of_table
from jaxvision.convert.torch_maxvit import pre_norm_mbconv, timm_mbconv_names

__all__ = ["map_coatnet", "stored_resolution"]


def _conv1x1_as_dense(m, dst: str, src: str) -> None:
    w = m.take(f"{src}.weight")
    m.out.put(f"{dst}/kernel", w.reshape(w.shape[0], -1).T)
    m.out.put(f"{dst}/bias", m.take(f"{src}.bias"))


def _transformer_block(m, dst: str, src: str) -> tuple[int, int, int]:
    """Returns (output width, heads, window side)."""
    if m.has(f"{src}.shortcut.expand.weight"):
        m.conv(f"{dst}/shortcut", f"{src}.shortcut.expand", bias=True)
    m.ln(f"{dst}/norm1", f"{src}.norm1.norm" if m.has(f"{src}.norm1.norm.weight") else f"{src}.norm1")
    heads, side = relative_attention(m, f"{dst}/attn", f"{src}.attn",
                                     table="rel_pos.relative_position_bias_table", head_first=True)
    m.ln(f"{dst}/norm2", f"{src}.norm2")
    _conv1x1_as_dense(m, f"{dst}/mlp/fc1", f"{src}.mlp.fc1")
    _conv1x1_as_dense(m, f"{dst}/mlp/fc2", f"{src}.mlp.fc2")
    return int(m.sd[f"{src}.attn.proj.weight"].shape[0]), heads, side


def stored_resolution(sd) -> int | None:
    """The input side the first Transformer stage's bias table was made for (stage i's map is
    the input / 2^(i+2)); None when the state dict has no Transformer stage."""
    i = 0
    while f"stages.{i}.blocks.0.norm2.weight" in sd:
        key = f"stages.{i}.blocks.0.attn.rel_pos.relative_position_bias_table"
        if key in sd:
            return window_of_table(sd[key].shape[0]) * 2 ** (i + 2)
        i += 1
    return None


def map_coatnet(m, model_overrides: dict[str, Any]) -> int:
    """Map a timm CoAtNet state dict held by ``m``; the architecture read from it is added to
    ``model_overrides`` (given values win). Returns the number of classes."""
    if not m.has("stem.conv1.weight") or not m.has("stages.0.blocks.0.pre_norm.weight"):
        raise ValueError("state dict has no stem.conv1.weight / stages.0.blocks.0.pre_norm.weight; "
                         "is it a timm coatnet_*?")
    m.conv("stem/conv1", "stem.conv1", bias=m.has("stem.conv1.bias"))
    m.bn("stem/norm1", "stem.norm1")
    m.conv("stem/conv2", "stem.conv2", bias=m.has("stem.conv2.bias"))
    widths, depths, kinds, head_dim = [], [], [], 32
    i = 0
    while m.has(f"stages.{i}.blocks.0.norm2.weight"):
        kind = "C" if m.has(f"stages.{i}.blocks.0.pre_norm.weight") else "T"
        j = 0
        while m.has(f"stages.{i}.blocks.{j}.norm2.weight"):
            src, dst = f"stages.{i}.blocks.{j}", f"stage{i + 1}_block{j + 1}"
            if kind == "C":
                width = pre_norm_mbconv(m, dst, src, timm_mbconv_names(""))
            else:
                width, heads, _ = _transformer_block(m, dst, src)
                head_dim = width // heads
            j += 1
        widths.append(width)
        depths.append(j)
        kinds.append(kind)
        i += 1
    m.ln("head/norm", "head.norm")
    m.linear("head/pre_logits", "head.pre_logits.fc")
    num_classes = 0
    if m.has("head.fc.weight"):
        m.linear("head/head", "head.fc")
        num_classes = int(m.sd["head.fc.weight"].shape[0])
    arch = {
        "stem_width": int(m.sd["stem.conv2.weight"].shape[0]),
        "embed_dims": tuple(widths),
        "depths": tuple(depths),
        "block_types": tuple(kinds),
        "head_dim": head_dim,
    }
    for k, v in arch.items():
        model_overrides.setdefault(k, v)
    return num_classes
