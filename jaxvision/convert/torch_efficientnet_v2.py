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
stored in one and are the published ones (``V2_STRIDES``, the same in every size).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxvision.convert.torch_mapper import conv_norm, squeeze_excite
from jaxvision.models.efficientnet import StageConfig

__all__ = ["conventions", "map_efficientnet_v2"]


@dataclasses.dataclass
class _Block:
    fused: bool
    c_in: int
    c_out: int
    hidden: int
    kernel: int
    se: bool


def _torchvision_block(m, dst: str, src: str) -> _Block:
    w0 = m.sd[f"{src}.0.0.weight"]
    if m.has(f"{src}.2.fc1.weight"):  # MBConv: expand, depthwise, SE, project
        conv_norm(m, f"{dst}/expand", f"{src}.0.0", f"{src}.0.1")
        conv_norm(m, f"{dst}/dw", f"{src}.1.0", f"{src}.1.1")
        squeeze_excite(m, dst, f"{src}.2.fc1", f"{src}.2.fc2")
        conv_norm(m, f"{dst}/project", f"{src}.3.0", f"{src}.3.1")
        k = m.sd[f"{src}.1.0.weight"].shape[-1]
        return _Block(False, w0.shape[1], m.sd[f"{src}.3.0.weight"].shape[0], w0.shape[0], k, True)
    conv_norm(m, f"{dst}/fused", f"{src}.0.0", f"{src}.0.1")
    if m.has(f"{src}.1.0.weight"):  # fused kxk expand + 1x1 project
        conv_norm(m, f"{dst}/project", f"{src}.1.0", f"{src}.1.1")
        out = m.sd[f"{src}.1.0.weight"].shape[0]
        return _Block(True, w0.shape[1], out, w0.shape[0], w0.shape[-1], False)
    return _Block(True, w0.shape[1], w0.shape[0], w0.shape[1], w0.shape[-1], False)


def _timm_block(m, dst: str, src: str) -> _Block:
    if m.has(f"{src}.conv_dw.weight"):  # InvertedResidual
        conv_norm(m, f"{dst}/expand", f"{src}.conv_pw", f"{src}.bn1")
        conv_norm(m, f"{dst}/dw", f"{src}.conv_dw", f"{src}.bn2")
        se = m.has(f"{src}.se.conv_reduce.weight")
        if se:
            squeeze_excite(m, dst, f"{src}.se.conv_reduce", f"{src}.se.conv_expand")
        conv_norm(m, f"{dst}/project", f"{src}.conv_pwl", f"{src}.bn3")
        w0, k = m.sd[f"{src}.conv_pw.weight"], m.sd[f"{src}.conv_dw.weight"].shape[-1]
        return _Block(False, w0.shape[1], m.sd[f"{src}.conv_pwl.weight"].shape[0], w0.shape[0], k, se)
    if m.has(f"{src}.conv_exp.weight"):  # EdgeResidual
        conv_norm(m, f"{dst}/fused", f"{src}.conv_exp", f"{src}.bn1")
        conv_norm(m, f"{dst}/project", f"{src}.conv_pwl", f"{src}.bn2")
        w0 = m.sd[f"{src}.conv_exp.weight"]
        return _Block(True, w0.shape[1], m.sd[f"{src}.conv_pwl.weight"].shape[0], w0.shape[0],
                      w0.shape[-1], False)
    conv_norm(m, f"{dst}/fused", f"{src}.conv", f"{src}.bn1")  # ConvBnAct
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


# Strides of stage i in every torchvision / official EfficientNetV2 (S has the first six stages).
V2_STRIDES = (1, 2, 2, 2, 1, 2, 1)


def _stage_configs(stages: list[list[_Block]]) -> list[dict[str, Any]]:
    if len(stages) > len(V2_STRIDES):
        raise ValueError(
            f"the state dict has {len(stages)} stages; EfficientNetV2 has at most {len(V2_STRIDES)} "
            "(strides are not stored in a state dict, they are the published ones)")
    out = []
    for blocks, strides in zip(stages, V2_STRIDES, strict=False):
        b = blocks[0]
        out.append(dataclasses.asdict(StageConfig(
            expand_ratio=b.hidden // b.c_in, kernel_size=int(b.kernel), strides=strides,
            features=int(b.c_out), repeats=len(blocks), se_ratio=0.25 if b.se else 0.0,
            fused=b.fused)))
    return out


def conventions(sd, given: dict[str, Any]) -> dict[str, Any]:
    """Padding and BatchNorm epsilon of the checkpoint: given values, else 'SAME' for timm
    names (its TF ports) and PyTorch symmetric padding for torchvision's; eps 1e-3 for both."""
    timm = "conv_stem.weight" in sd
    return {
        "padding": given.get("padding") or ("SAME" if timm else "SYMMETRIC"),
        "bn_epsilon": 1e-3 if given.get("bn_epsilon") is None else float(given["bn_epsilon"]),
    }


def map_efficientnet_v2(m, model_overrides: dict[str, Any]) -> int:
    """Map a torchvision or timm EfficientNetV2 state dict held by ``m``; the stem/head widths
    and stages read from it are added to ``model_overrides`` (given values win). Returns the
    number of classes."""
    timm = m.has("conv_stem.weight")
    if not timm and not m.has("features.0.0.weight"):
        raise ValueError("state dict has neither features.0.0.weight (torchvision) nor "
                         "conv_stem.weight (timm); is it an EfficientNetV2?")
    stem = ("conv_stem", "bn1") if timm else ("features.0.0", "features.0.1")
    conv_norm(m, "stem", *stem)
    stages = _stages(m, timm)
    head = ("conv_head", "bn2") if timm else (f"features.{len(stages) + 1}.0", f"features.{len(stages) + 1}.1")
    conv_norm(m, "head_conv", *head)
    classifier = "classifier" if timm else "classifier.1"
    num_classes = 0
    if m.has(f"{classifier}.weight"):
        m.linear("head", classifier)
        num_classes = int(m.sd[f"{classifier}.weight"].shape[0])
    arch = {
        "stem_features": int(m.sd[f"{stem[0]}.weight"].shape[0]),
        "head_features": int(m.sd[f"{head[0]}.weight"].shape[0]),
        "stages": _stage_configs(stages),
    }
    for k, v in arch.items():
        model_overrides.setdefault(k, v)
    return num_classes
