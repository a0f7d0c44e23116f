"""Relative-position attention weights (torchvision Swin/MaxViT, timm MaxxViT/CoAtNet) ->
``layers.RelativePositionSelfAttention`` parameters: qkv row order, bias-table layout, and a
check of the stored relative position index."""

from __future__ import annotations

import math

import numpy as np

from jaxvision.layers.relative_attention import relative_position_index

__all__ = ["relative_attention", "window_of_table"]


def window_of_table(rows: int) -> int:
    """Square window side w whose bias table has (2w - 1)^2 rows."""
    side = math.isqrt(rows)
    if side * side != rows or side % 2 == 0:
        raise ValueError(f"relative position bias table of {rows} rows is not (2w-1)^2 for a square window")
    return (side + 1) // 2


def relative_attention(m, dst: str, src: str, *, qkv="qkv", proj="proj",
                       table="relative_position_bias_table", index="relative_position_index",
                       head_first=False, tf_table=False) -> tuple[int, int]:
    """Map one relative-position attention (``layers.RelativePositionSelfAttention``) from
    ``{src}.{qkv}`` / ``{src}.{proj}`` (Linear, or 1x1 Conv2d as timm's ``Attention2d``) and the
    bias table; returns (heads, window side).

    head_first: the qkv rows are ordered (head, q|k|v, head_dim) (timm ``head_first=True``)
      instead of jaxvision's (q|k|v, head, head_dim).
    tf_table: the table is timm's ``RelPosBiasTf`` (heads, 2h-1, 2w-1) indexed by key - query
      offsets (google-research/maxvit) instead of ((2h-1)(2w-1), heads) by query - key.
    """
    bias_table = m.take(f"{src}.{table}")
    if tf_table:
        bias_table = bias_table[:, ::-1, ::-1].reshape(bias_table.shape[0], -1).T
    heads = int(bias_table.shape[1])
    w = m.take(f"{src}.{qkv}.weight")
    w = w.reshape(w.shape[0], -1)  # a 1x1 conv's (out, in, 1, 1) is a Linear's (out, in)
    b = m.take(f"{src}.{qkv}.bias") if m.has(f"{src}.{qkv}.bias") else None
    if head_first:  # rows (head, part, d) -> (part, head, d)
        order = np.arange(w.shape[0]).reshape(heads, 3, -1).transpose(1, 0, 2).reshape(-1)
        w, b = w[order], (None if b is None else b[order])
    m.out.put(f"{dst}/qkv/kernel", w.T)
    if b is not None:
        m.out.put(f"{dst}/qkv/bias", b)
    pw = m.take(f"{src}.{proj}.weight")
    m.out.put(f"{dst}/proj/kernel", pw.reshape(pw.shape[0], -1).T)
    if m.has(f"{src}.{proj}.bias"):
        m.out.put(f"{dst}/proj/bias", m.take(f"{src}.{proj}.bias"))
    m.out.put(f"{dst}/relative_position_bias_table", bias_table)
    side = window_of_table(bias_table.shape[0])
    if index and m.has(f"{src}.{index}"):
        stored = np.asarray(m.take(f"{src}.{index}")).reshape(-1)
        if not np.array_equal(stored, relative_position_index(side, side).reshape(-1)):
            raise ValueError(f"{src}.{index} is not the standard relative position index")
    return heads, side
