"""timm ``efficientformer_{l1,l3,l7}`` state dicts -> ``models.efficientformer``.

``stem.{conv1,norm1,conv2,norm2}``; ``stages.{i}.downsample.{conv,norm}``;
``stages.{i}.blocks.{k}``: MetaBlock2d (``ls1.gamma``, ``mlp.{fc1,norm1,fc2,norm2}``,
``ls2.gamma``) and MetaBlock1d (``norm1``, ``token_mixer.{qkv,proj,attention_biases}``, ``ls1``,
``norm2``, ``mlp.{fc1,fc2}``, ``ls2``); the parameter-free ``Flat`` takes a block index of its
own, so blocks are numbered in the order their indices appear. ``norm``, ``head``, ``head_dist``.
The ``attention_bias_idxs`` buffer is checked against ``attention_bias_index`` (|dy| * 7 + |dx|).
Original Snap checkpoints (``network.*`` names) are read after timm's ``checkpoint_filter_fn``
renaming, i.e. as timm saves them. ImageNet mean/std.
"""

from __future__ import annotations

import re

import numpy as np

from jaxvision.convert.torch_mapper import StateDictMapper, classifier

__all__ = ["map_efficientformer"]


def _conv_bias(m: StateDictMapper, dst: str, src: str) -> None:
    m.conv(dst, src, bias=True)


def _meta4d(m: StateDictMapper, dst: str, src: str) -> None:
    m.out.put(f"{dst}/layer_scale1", m.take(f"{src}.ls1.gamma"))
    m.out.put(f"{dst}/layer_scale2", m.take(f"{src}.ls2.gamma"))
    for k in (1, 2):
        _conv_bias(m, f"{dst}/fc{k}", f"{src}.mlp.fc{k}")
        m.bn(f"{dst}/norm{k}", f"{src}.mlp.norm{k}")


def _meta3d(m: StateDictMapper, dst: str, src: str) -> None:
    from jaxvision.models.efficientformer import attention_bias_index

    m.ln(f"{dst}/norm1", f"{src}.norm1")
    m.ln(f"{dst}/norm2", f"{src}.norm2")
    m.linear(f"{dst}/attn/qkv", f"{src}.token_mixer.qkv")
    m.linear(f"{dst}/attn/proj", f"{src}.token_mixer.proj")
    biases = m.take(f"{src}.token_mixer.attention_biases")
    m.out.put(f"{dst}/attn/attention_biases", biases)
    idx = m.take(f"{src}.token_mixer.attention_bias_idxs") if m.has(
        f"{src}.token_mixer.attention_bias_idxs") else None
    resolution = int(round(biases.shape[1] ** 0.5))
    if idx is not None and not np.array_equal(idx, attention_bias_index(resolution)):
        raise ValueError(f"{src}.token_mixer.attention_bias_idxs is not timm's |dy| * "
                         f"{resolution} + |dx| index; is this a timm EfficientFormer?")
    m.out.put(f"{dst}/layer_scale1", m.take(f"{src}.ls1.gamma"))
    m.out.put(f"{dst}/layer_scale2", m.take(f"{src}.ls2.gamma"))
    m.linear(f"{dst}/fc1", f"{src}.mlp.fc1")
    m.linear(f"{dst}/fc2", f"{src}.mlp.fc2")


def _block_indices(m: StateDictMapper, stage: int) -> list[int]:
    pattern = re.compile(rf"stages\.{stage}\.blocks\.(\d+)\.")
    return sorted({int(g.group(1)) for k in m.sd if (g := pattern.match(k))})


def map_efficientformer(m: StateDictMapper, overrides=None) -> int:
    for k in (1, 2):
        _conv_bias(m, f"stem_conv{k}", f"stem.conv{k}")
        m.bn(f"stem_norm{k}", f"stem.norm{k}")
    i = 0
    while blocks := _block_indices(m, i):
        if m.has(f"stages.{i}.downsample.conv.weight"):
            _conv_bias(m, f"stages_{i}_down_conv", f"stages.{i}.downsample.conv")
            m.bn(f"stages_{i}_down_norm", f"stages.{i}.downsample.norm")
        for j, k in enumerate(blocks):
            src, dst = f"stages.{i}.blocks.{k}", f"stages_{i}_{j}"
            (_meta3d if m.has(f"{src}.token_mixer.qkv.weight") else _meta4d)(m, dst, src)
        i += 1
    m.ln("norm", "norm")
    if m.has("head_dist.weight"):
        m.linear("head_dist", "head_dist")
    return classifier(m, "head")
