"""EfficientNetV2 state dicts -> jaxvision ``efficientnet_v2_*``: torchvision
``efficientnet_v2_s/m/l`` and timm's TF ports ``tf_efficientnetv2_s/m/l``.

torchvision: ``features.0`` (stem), ``features.{s}.{j}.block`` (FusedMBConv: ``0`` kxk [+ ``1``
1x1 project]; MBConv: ``0`` expand, ``1`` depthwise, ``2`` SE ``fc1``/``fc2``, ``3`` project),
the head conv ``features.{last}``, ``classifier.1``; symmetric padding, BatchNorm eps 1e-3.
timm: ``conv_stem``/``bn1``, ``blocks.{s}.{j}`` (ConvBnAct ``conv``/``bn1``; EdgeResidual
``conv_exp``/``bn1``/``conv_pwl``/``bn2``; InvertedResidual ``conv_pw``/``bn1``/``conv_dw``/``bn2``/
``se.conv_reduce``/``se.conv_expand``/``conv_pwl``/``bn3``), ``conv_head``/``bn2``,
``classifier``; the ``tf_`` ports use TF "SAME" padding and BatchNorm eps 1e-3 (assumed for
timm names; pass ``padding='SYMMETRIC', bn_epsilon=1e-5`` for timm's non-TF ``efficientnetv2_*``).

Channels, repeats, expansion, kernel sizes and SE are read from the state dict; strides are not
stored in one and are taken from the registered size's stages (a state dict with another number
of stages is refused).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxvision.convert.common import non_default_overrides
from jaxvision.models.efficientnet import StageConfig
from jaxvision.models.efficientnet_v2 import efficientnet_v2_stages

__all__ = ["convert_efficientnet_v2"]

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclasses.dataclass
class _Block:
    fused: bool
    c_in: int
    c_out: int
    hidden: int
    kernel: int
    se: bool


def _cna(m, dst, conv, bn):
    m.conv(f"{dst}/conv", conv)
    m.bn(f"{dst}/norm", bn)


def _torchvision_block(m, dst: str, src: str) -> _Block:
    w0 = m.sd[f"{src}.0.0.weight"]
    if m.has(f"{src}.2.fc1.weight"):  # MBConv: expand, depthwise, SE, project
        _cna(m, f"{dst}/expand", f"{src}.0.0", f"{src}.0.1")
        _cna(m, f"{dst}/dw", f"{src}.1.0", f"{src}.1.1")
        m.conv(f"{dst}/se/reduce", f"{src}.2.fc1", bias=True)
        m.conv(f"{dst}/se/expand", f"{src}.2.fc2", bias=True)
        _cna(m, f"{dst}/project", f"{src}.3.0", f"{src}.3.1")
        k = m.sd[f"{src}.1.0.weight"].shape[-1]
        return _Block(False, w0.shape[1], m.sd[f"{src}.3.0.weight"].shape[0], w0.shape[0], k, True)
    _cna(m, f"{dst}/fused", f"{src}.0.0", f"{src}.0.1")
    if m.has(f"{src}.1.0.weight"):  # fused kxk expand + 1x1 project
        _cna(m, f"{dst}/project", f"{src}.1.0", f"{src}.1.1")
        out = m.sd[f"{src}.1.0.weight"].shape[0]
        return _Block(True, w0.shape[1], out, w0.shape[0], w0.shape[-1], False)
    return _Block(True, w0.shape[1], w0.shape[0], w0.shape[1], w0.shape[-1], False)


def _timm_block(m, dst: str, src: str) -> _Block:
    if m.has(f"{src}.conv_dw.weight"):  # InvertedResidual
        _cna(m, f"{dst}/expand", f"{src}.conv_pw", f"{src}.bn1")
        _cna(m, f"{dst}/dw", f"{src}.conv_dw", f"{src}.bn2")
        se = m.has(f"{src}.se.conv_reduce.weight")
        if se:
            m.conv(f"{dst}/se/reduce", f"{src}.se.conv_reduce", bias=True)
            m.conv(f"{dst}/se/expand", f"{src}.se.conv_expand", bias=True)
        _cna(m, f"{dst}/project", f"{src}.conv_pwl", f"{src}.bn3")
        w0, k = m.sd[f"{src}.conv_pw.weight"], m.sd[f"{src}.conv_dw.weight"].shape[-1]
        return _Block(False, w0.shape[1], m.sd[f"{src}.conv_pwl.weight"].shape[0], w0.shape[0], k, se)
    if m.has(f"{src}.conv_exp.weight"):  # EdgeResidual
        _cna(m, f"{dst}/fused", f"{src}.conv_exp", f"{src}.bn1")
        _cna(m, f"{dst}/project", f"{src}.conv_pwl", f"{src}.bn2")
        w0 = m.sd[f"{src}.conv_exp.weight"]
        return _Block(True, w0.shape[1], m.sd[f"{src}.conv_pwl.weight"].shape[0], w0.shape[0],
                      w0.shape[-1], False)
    _cna(m, f"{dst}/fused", f"{src}.conv", f"{src}.bn1")  # ConvBnAct
    w0 = m.sd[f"{src}.conv.weight"]
    return _Block(True, w0.shape[1], w0.shape[0], w0.shape[1], w0.shape[-1], False)


def _stages(m, timm: bool) -> list[list[_Block]]:
    stages: list[list[_Block]] = []
    s = 0 if timm else 1
    src_of = (lambda s, j: f"blocks.{s}.{j}") if timm else (lambda s, j: f"features.{s}.{j}.block")
    probe = (lambda s, j: any(m.has(f"blocks.{s}.{j}.{c}.weight") for c in ("conv", "conv_exp", "conv_pw"))
             ) if timm else (lambda s, j: m.has(f"features.{s}.{j}.block.0.0.weight"))
    block = _timm_block if timm else _torchvision_block
    while probe(s, 0):
        blocks, j = [], 0
        while probe(s, j):
            blocks.append(block(m, f"stage{len(stages) + 1}_block{j + 1}", src_of(s, j)))
            j += 1
        stages.append(blocks)
        s += 1
    return stages


def _stage_configs(name: str, stages: list[list[_Block]]) -> list[dict[str, Any]]:
    registered = efficientnet_v2_stages(name)
    if len(stages) != len(registered):
        raise ValueError(
            f"the state dict has {len(stages)} stages, {name} has {len(registered)}: strides are "
            "not stored in a state dict, so only the registered stage layout can be converted")
    out = []
    for blocks, ref in zip(stages, registered, strict=True):
        b = blocks[0]
        expand = b.hidden // b.c_in
        out.append(dict(expand_ratio=expand, kernel_size=int(b.kernel), strides=ref.strides,
                        features=int(b.c_out), repeats=len(blocks),
                        se_ratio=0.25 if b.se else 0.0, fused=b.fused))
    return out


def convert_efficientnet_v2(m, name: str, bn_epsilon=None, padding=None):
    """Map a torchvision or timm EfficientNetV2 state dict held by ``m`` onto model ``name``."""
    timm = m.has("conv_stem.weight")
    if not timm and not m.has("features.0.0.weight"):
        raise ValueError("state dict has neither features.0.0.weight (torchvision) nor "
                         "conv_stem.weight (timm); is it an EfficientNetV2?")
    stem = ("conv_stem", "bn1") if timm else ("features.0.0", "features.0.1")
    _cna(m, "stem", *stem)
    stages = _stages(m, timm)
    head = ("conv_head", "bn2") if timm else (f"features.{len(stages) + 1}.0", f"features.{len(stages) + 1}.1")
    _cna(m, "head_conv", *head)
    classifier = "classifier" if timm else "classifier.1"
    num_classes = 0
    if m.has(f"{classifier}.weight"):
        m.linear("head", classifier)
        num_classes = int(m.sd[f"{classifier}.weight"].shape[0])
    registered = [dataclasses.asdict(s) for s in efficientnet_v2_stages(name)]
    configs = _stage_configs(name, stages)
    arch: dict[str, Any] = {
        "stem_features": int(m.sd[f"{stem[0]}.weight"].shape[0]),
        "head_features": int(m.sd[f"{head[0]}.weight"].shape[0]),
        "bn_epsilon": 1e-3 if bn_epsilon is None else float(bn_epsilon),
        "padding": padding or ("SAME" if timm else "SYMMETRIC"),
    }
    overrides = non_default_overrides(name, arch)
    if configs != registered:
        overrides["stages"] = [dataclasses.asdict(StageConfig(**c)) for c in configs]
    return num_classes, IMAGENET, overrides, None

