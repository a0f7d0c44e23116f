"""torchvision Swin Transformer v1 (``swin_t``/``swin_s``/``swin_b`` and any width, depth, window
of that class) -> jaxvision ``swin_*``.

torchvision names: ``features.0.{0,2}`` (patch conv, LayerNorm), ``features.{2i-1}.{j}`` (block j
of stage i: ``norm1``, ``attn.{qkv,proj,relative_position_bias_table,relative_position_index}``,
``norm2``, ``mlp.{0,3}``), ``features.{2i}`` (patch merging: ``norm``, ``reduction``), ``norm``,
``head``. The architecture (embed dim, depths, heads, window, patch, MLP ratio) is read from the
state dict; the stored ``relative_position_index`` is checked against jaxvision's.
"""

from __future__ import annotations

from typing import Any

from jaxvision.convert.relative_position import relative_attention

__all__ = ["map_swin"]


def _block(m, dst: str, src: str) -> tuple[int, int]:
    m.ln(f"{dst}/norm1", f"{src}.norm1")
    heads, window = relative_attention(m, f"{dst}/attn/attn", f"{src}.attn")
    m.ln(f"{dst}/norm2", f"{src}.norm2")
    m.linear(f"{dst}/mlp/fc1", f"{src}.mlp.0")
    m.linear(f"{dst}/mlp/fc2", f"{src}.mlp.3")
    return heads, window


def map_swin(m, model_overrides: dict[str, Any]) -> int:
    """Map a torchvision Swin state dict held by ``m`` (``convert.torch_mapper.StateDictMapper``);
    the architecture read from it is added to ``model_overrides`` (given values win). Returns
    the number of classes."""
    if not m.has("features.0.0.weight"):
        raise ValueError("state dict has no features.0.0.weight; is it a torchvision swin_t/s/b?")
    m.conv("patch_embed", "features.0.0", bias=True)
    m.ln("patch_norm", "features.0.2")
    depths, heads, windows = [], [], set()
    stage = 1
    while m.has(f"features.{2 * stage - 1}.0.norm1.weight"):
        if stage > 1:
            merge = f"features.{2 * stage - 2}"
            m.ln(f"merge{stage - 1}/norm", f"{merge}.norm")
            m.out.put(f"merge{stage - 1}/reduction/kernel", m.take(f"{merge}.reduction.weight").T)
        j = 0
        while m.has(f"features.{2 * stage - 1}.{j}.norm1.weight"):
            h, w = _block(m, f"stage{stage}_block{j + 1}", f"features.{2 * stage - 1}.{j}")
            windows.add(w)
            j += 1
        depths.append(j)
        heads.append(h)
        stage += 1
    m.ln("norm", "norm")
    num_classes = int(m.sd["head.weight"].shape[0]) if m.has("head.weight") else 0
    if num_classes:
        m.linear("head", "head")
    patch = m.sd["features.0.0.weight"]
    embed_dim = int(patch.shape[0])
    arch = {
        "embed_dim": embed_dim,
        "depths": tuple(depths),
        "num_heads": tuple(heads),
        "patch_size": int(patch.shape[-1]),
        "window_size": windows.pop(),
        "mlp_ratio": float(m.sd["features.1.0.mlp.0.weight"].shape[0] / embed_dim),
    }
    for k, v in arch.items():
        model_overrides.setdefault(k, v)
    return num_classes

