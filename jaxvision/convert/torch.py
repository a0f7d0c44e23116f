"""PyTorch state dicts (torchvision / timm names) -> jaxvision: resnet18..152, vit_*,
r50_vit_b16 / r26_vit_s32 (timm ``vit_base_r50_s16_224`` names), mobilenet_v2 (any width) and efficientnet_b0..b7.

Sources: a ``.safetensors`` file (read with ``safetensors.numpy``; no torch needed), a ``.pt``/
``.pth``/``.bin`` file read with ``torch.load(weights_only=True)`` (tensors only: arbitrary
pickled code is never executed), or an in-memory mapping name -> tensor/array.

Layout conventions handled: conv weights (out, in/groups, kh, kw) -> (kh, kw, in/groups, out);
linear (out, in) -> (in, out); timm's fused ``attn.qkv`` splits into query/key/value
(D, heads, head_dim); ``attn.proj`` becomes the (heads, head_dim, D) output kernel. torchvision
ResNets are v1.5 with symmetric padding and BatchNorm eps 1e-5, as jaxvision's resnets. Inputs are
normalized with ImageNet mean/std (torchvision, timm ResNets) or 0.5/0.5 (timm ViTs); pass
``mean``/``std`` when a checkpoint was trained otherwise.

MobileNetV2 / EfficientNet: depthwise weights (C, 1, kh, kw) become jaxvision's grouped-conv
kernel (kh, kw, 1, C); SE ``fc1``/``fc2`` (timm ``conv_reduce``/``conv_expand``) are the 1x1
convs ``se/reduce``/``se/expand``. Both are built with PyTorch's symmetric padding. BatchNorm:
torchvision mobilenet_v2 and efficientnet_b0..b4 use PyTorch's default (eps 1e-5, momentum 0.1 =
Flax 0.9); torchvision efficientnet_b5..b7 (ported TF weights) use eps 1e-3, momentum 0.01 (Flax
0.99); timm ``efficientnet_b*``/``mobilenetv2_*`` use eps 1e-5. timm's ``tf_efficientnet_*``
ports need ``padding='SAME', bn_epsilon=1e-3`` (their names are the same as the non-TF ones).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxvision.convert.common import Converted, ParamWriter

__all__ = ["convert_torch", "load_state_dict"]

_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def _to_numpy(v) -> np.ndarray:
    if hasattr(v, "detach"):  # a torch tensor
        return v.detach().cpu().float().numpy()
    return np.asarray(v, np.float32)


def load_state_dict(source: Any) -> dict[str, np.ndarray]:
    """name -> float32 numpy from a file or a mapping (see the module docstring)."""
    if isinstance(source, Mapping):
        sd = source
    else:
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"state-dict file {path!r} not found")
        if path.endswith(".safetensors"):
            try:
                from safetensors.numpy import load_file
            except ImportError as e:
                raise ImportError(
                    f"reading {path!r} needs the safetensors package (pip install safetensors)"
                ) from e

            sd = load_file(path)
        else:
            try:
                import torch
            except ImportError as e:
                raise ImportError(
                    f"reading {path!r} needs torch (pip install torch), or convert it to .safetensors"
                ) from e
            sd = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model", "model_ema"):  # training checkpoints wrap the weights
            if isinstance(sd, Mapping) and key in sd and isinstance(sd[key], Mapping):
                sd = sd[key]
                break
    out = {}
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            continue
        out[re.sub(r"^(module\.|model\.)", "", k)] = _to_numpy(v)
    return out


class _Mapper:
    def __init__(self, sd):
        self.sd = sd
        self.used: set[str] = set()
        self.out = ParamWriter()

    def take(self, key):
        if key not in self.sd:
            raise ValueError(f"state dict has no {key!r}; is it the architecture named by --model?")
        self.used.add(key)
        return self.sd[key]

    def has(self, key):
        return key in self.sd

    def conv(self, dst, src, bias=False):
        self.out.put(f"{dst}/kernel", self.take(f"{src}.weight").transpose(2, 3, 1, 0))
        if bias:
            self.out.put(f"{dst}/bias", self.take(f"{src}.bias"))

    def bn(self, dst, src):
        self.out.batchnorm(
            dst,
            self.take(f"{src}.weight"),
            self.take(f"{src}.bias"),
            self.take(f"{src}.running_mean"),
            self.take(f"{src}.running_var"),
        )

    def ln(self, dst, src):
        self.out.put(f"{dst}/scale", self.take(f"{src}.weight"))
        self.out.put(f"{dst}/bias", self.take(f"{src}.bias"))

    def linear(self, dst, src):
        self.out.put(f"{dst}/kernel", self.take(f"{src}.weight").T)
        self.out.put(f"{dst}/bias", self.take(f"{src}.bias"))


def _resnet_blocks(m: _Mapper, block, norm, norm_name: str, down_conv: str, down_norm: str,
                   first_stage: int) -> int:
    """Map every residual block onto ``ResNetStages`` names; returns the number of stages.

    ``block(stage, j)`` is the source prefix of block j of stage ``stage`` (counted from
    ``first_stage``); each block has ``conv{k}`` + ``{norm_name}{k}`` and an optional projection
    ``down_conv`` + ``down_norm``; ``norm`` is ``m.bn`` (torchvision) or ``m.ln`` (GroupNorm)."""
    stage = first_stage
    while m.has(f"{block(stage, 0)}.conv1.weight"):
        j = 0
        while m.has(f"{block(stage, j)}.conv1.weight"):
            src = block(stage, j)
            dst = f"backbone/stage{stage - first_stage + 1}_block{j + 1}"
            k = 1
            while m.has(f"{src}.conv{k}.weight"):
                m.conv(f"{dst}/conv{k}", f"{src}.conv{k}")
                norm(f"{dst}/norm{k}", f"{src}.{norm_name}{k}")
                k += 1
            if m.has(f"{src}.{down_conv}.weight"):
                m.conv(f"{dst}/downsample_conv", f"{src}.{down_conv}")
                norm(f"{dst}/downsample_norm", f"{src}.{down_norm}")
            j += 1
        stage += 1
    return stage - first_stage


def _resnet(m: _Mapper) -> int:
    m.conv("backbone/stem_conv", "conv1")
    m.bn("backbone/stem_norm", "bn1")
    _resnet_blocks(m, lambda i, j: f"layer{i}.{j}", m.bn, "bn", "downsample.0", "downsample.1",
                   first_stage=1)
    if m.has("fc.weight"):
        m.linear("head", "fc")
        return int(m.sd["fc.weight"].shape[0])
    return 0


def _vit(m: _Mapper) -> int:
    sd = m.sd
    m.conv("patch_embed/proj", "patch_embed.proj", bias=True)
    if m.has("cls_token"):
        m.out.put("cls/cls", m.take("cls_token"))
    m.out.put("pos_embed/embedding", m.take("pos_embed"))
    width = sd["patch_embed.proj.weight"].shape[0]
    i = 0
    while m.has(f"blocks.{i}.norm1.weight"):
        src, dst = f"blocks.{i}", f"encoder/block_{i}"
        m.ln(f"{dst}/norm1", f"{src}.norm1")
        m.ln(f"{dst}/norm2", f"{src}.norm2")
        qkv_w, qkv_b = m.take(f"{src}.attn.qkv.weight"), m.take(f"{src}.attn.qkv.bias")
        proj = m.take(f"{src}.attn.proj.weight")
        heads = _num_heads(width)
        hd = width // heads
        for n, name in enumerate(("query", "key", "value")):
            w = qkv_w[n * width : (n + 1) * width]  # (D_out, D_in)
            m.out.put(f"{dst}/attn/{name}/kernel", w.T.reshape(width, heads, hd))
            m.out.put(
                f"{dst}/attn/{name}/bias", qkv_b[n * width : (n + 1) * width].reshape(heads, hd)
            )
        m.out.put(f"{dst}/attn/out/kernel", proj.T.reshape(heads, hd, width))
        m.out.put(f"{dst}/attn/out/bias", m.take(f"{src}.attn.proj.bias"))
        m.linear(f"{dst}/mlp/fc1", f"{src}.mlp.fc1")
        m.linear(f"{dst}/mlp/fc2", f"{src}.mlp.fc2")
        i += 1
    m.ln("encoder/norm", "norm")
    if m.has("head.weight"):
        m.linear("head", "head")
        return int(sd["head.weight"].shape[0])
    return 0


_TIMM_HYBRID_BACKBONE = "patch_embed.backbone"


def _hybrid(m: _Mapper) -> int:
    """timm ``vit_base_r50_s16_224`` style hybrids: ``patch_embed.backbone`` is a ResNetV2 without
    pre-activation (``stem.conv``/``stem.norm``, ``stages.{i}.blocks.{j}.{conv,norm}{1,2,3}``,
    ``downsample.{conv,norm}``; GroupNorm ``weight``/``bias``), then ``patch_embed.proj`` and the
    ViT names of ``_vit``."""
    b = _TIMM_HYBRID_BACKBONE
    m.conv("backbone/stem_conv", f"{b}.stem.conv")
    m.ln("backbone/stem_norm", f"{b}.stem.norm")
    i = _resnet_blocks(m, lambda i, j: f"{b}.stages.{i}.blocks.{j}", m.ln, "norm",
                       "downsample.conv", "downsample.norm", first_stage=0)
    if i == 0:
        raise ValueError(
            f"state dict has no {b}.stages.0.blocks.0.conv1.weight; is it a timm ResNet hybrid "
            "(vit_base_r50_s16_224 names)?"
        )
    return _vit(m)


def _hybrid_stride(sd) -> int:
    """Output stride of the hybrid's backbone: stem /4 (conv /2, max pool /2), then /2 per stage
    after the first."""
    from jaxvision.models.hybrid import backbone_stride

    stages = {k.split(".")[3] for k in sd if k.startswith(f"{_TIMM_HYBRID_BACKBONE}.stages.")}
    return backbone_stride(len(stages))


def _cna(m: _Mapper, dst: str, conv: str, bn: str) -> None:
    """A ConvNormAct (conv without bias, then BatchNorm)."""
    m.conv(f"{dst}/conv", conv)
    m.bn(f"{dst}/norm", bn)


def _se(m: _Mapper, dst: str, reduce: str, expand: str) -> None:
    m.conv(f"{dst}/se/reduce", reduce, bias=True)
    m.conv(f"{dst}/se/expand", expand, bias=True)


def _head(m: _Mapper, src: str) -> int:
    if m.has(f"{src}.weight"):
        m.linear("head", src)
        return int(m.sd[f"{src}.weight"].shape[0])
    return 0


def _is_timm_mobile(m: _Mapper) -> bool:
    return m.has("conv_stem.weight")


def _timm_mobile_blocks(m: _Mapper, dst_name) -> None:
    """timm's EfficientNet-builder blocks ``blocks.{s}.{j}``: DepthwiseSeparable (conv_dw, bn1,
    [se], conv_pw, bn2) or InvertedResidual (conv_pw, bn1, conv_dw, bn2, [se], conv_pwl, bn3)."""
    s, k = 0, 0
    while m.has(f"blocks.{s}.0.conv_dw.weight"):
        j = 0
        while m.has(f"blocks.{s}.{j}.conv_dw.weight"):
            src, dst = f"blocks.{s}.{j}", dst_name(s, j, k)
            if m.has(f"{src}.conv_pwl.weight"):
                _cna(m, f"{dst}/expand", f"{src}.conv_pw", f"{src}.bn1")
                _cna(m, f"{dst}/dw", f"{src}.conv_dw", f"{src}.bn2")
                project = (f"{src}.conv_pwl", f"{src}.bn3")
            else:
                _cna(m, f"{dst}/dw", f"{src}.conv_dw", f"{src}.bn1")
                project = (f"{src}.conv_pw", f"{src}.bn2")
            if m.has(f"{src}.se.conv_reduce.weight"):
                _se(m, dst, f"{src}.se.conv_reduce", f"{src}.se.conv_expand")
            _cna(m, f"{dst}/project", *project)
            j, k = j + 1, k + 1
        s += 1


def _timm_mobile(m: _Mapper, block_name) -> int:
    """A whole timm MobileNetV2/EfficientNet: stem, blocks (named by ``block_name(stage, index in
    stage, running index)``), head conv, classifier."""
    _cna(m, "stem", "conv_stem", "bn1")
    _timm_mobile_blocks(m, block_name)
    _cna(m, "head_conv", "conv_head", "bn2")
    return _head(m, "classifier")


def _mobilenet_v2(m: _Mapper) -> int:
    """torchvision ``features.{0..18}`` / ``classifier.1``, or timm ``mobilenetv2_*``."""
    if _is_timm_mobile(m):
        return _timm_mobile(m, lambda s, j, k: f"block{k + 1}")
    _cna(m, "stem", "features.0.0", "features.0.1")
    k = 1
    while m.has(f"features.{k}.conv.0.0.weight"):
        src, dst = f"features.{k}.conv", f"block{k}"
        if m.has(f"{src}.3.weight"):  # 1x1 expand, dw, 1x1 project + BN
            _cna(m, f"{dst}/expand", f"{src}.0.0", f"{src}.0.1")
            _cna(m, f"{dst}/dw", f"{src}.1.0", f"{src}.1.1")
            _cna(m, f"{dst}/project", f"{src}.2", f"{src}.3")
        else:  # expand ratio 1: dw, 1x1 project + BN
            _cna(m, f"{dst}/dw", f"{src}.0.0", f"{src}.0.1")
            _cna(m, f"{dst}/project", f"{src}.1", f"{src}.2")
        k += 1
    _cna(m, "head_conv", f"features.{k}.0", f"features.{k}.1")
    return _head(m, "classifier.1")


def _efficientnet(m: _Mapper) -> int:
    """torchvision ``features.0`` (stem), ``features.{1..7}.{j}.block.*`` (MBConv: [expand], dw,
    SE fc1/fc2, project), ``features.8`` (head conv), ``classifier.1``; or timm names."""
    if _is_timm_mobile(m):
        return _timm_mobile(m, lambda s, j, k: f"stage{s + 1}_block{j + 1}")
    _cna(m, "stem", "features.0.0", "features.0.1")
    s = 1
    while m.has(f"features.{s}.0.block.0.0.weight"):
        j = 0
        while m.has(f"features.{s}.{j}.block.0.0.weight"):
            src, dst = f"features.{s}.{j}.block", f"stage{s}_block{j + 1}"
            i = 0
            if m.has(f"{src}.3.0.weight"):  # expand ratio != 1: a 1x1 expand comes first
                _cna(m, f"{dst}/expand", f"{src}.0.0", f"{src}.0.1")
                i = 1
            _cna(m, f"{dst}/dw", f"{src}.{i}.0", f"{src}.{i}.1")
            _se(m, dst, f"{src}.{i + 1}.fc1", f"{src}.{i + 1}.fc2")
            _cna(m, f"{dst}/project", f"{src}.{i + 2}.0", f"{src}.{i + 2}.1")
            j += 1
        s += 1
    _cna(m, "head_conv", f"features.{s}.0", f"features.{s}.1")
    return _head(m, "classifier.1")


def _mobilenet_width(sd) -> float:
    """The width multiplier whose rounded channels give this state dict's stem and last block."""
    from jaxvision.models.mobilenet_v2 import make_divisible

    stem = sd.get("features.0.0.weight", sd.get("conv_stem.weight"))
    heads = [int(k.split(".")[1]) for k in sd if re.fullmatch(r"features\.\d+\.0\.weight", k)]
    head_conv = sd.get("conv_head.weight", sd.get(f"features.{max(heads, default=0)}.0.weight"))
    if stem is None or head_conv is None or head_conv.ndim != 4:
        raise ValueError("state dict is not a torchvision/timm MobileNetV2 (no stem/head conv found)")
    c_stem, c_last = stem.shape[0], head_conv.shape[1]  # the head conv's input = last block's output
    for w in sorted({0.35, 0.5, 0.75, 1.0, 1.3, 1.4, c_last / 320, c_stem / 32}):
        if make_divisible(32 * w) == c_stem and make_divisible(320 * w) == c_last:
            return float(w)
    raise ValueError(
        f"no MobileNetV2 width multiplier gives stem {c_stem} and last block {c_last} channels; "
        "is this mobilenet_v2?"
    )


def _num_heads(width: int) -> int:
    from jaxvision.models.vit import VIT_SIZES

    for d, _, heads, _ in VIT_SIZES.values():
        if d == width:
            return heads
    raise ValueError(f"no ViT size with hidden size {width}")


def _mobile_overrides(family, name, sd, bn_epsilon, padding) -> dict[str, Any]:
    """Model overrides that reproduce the PyTorch model: symmetric padding, its BatchNorm."""
    eps, momentum = 1e-5, 0.9  # PyTorch BatchNorm2d defaults (momentum 0.1 = Flax 0.9)
    if family == "efficientnet" and name in ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7"):
        if "features.0.0.weight" in sd:  # torchvision's B5..B7: eps 1e-3, momentum 0.01
            eps, momentum = 1e-3, 0.99
    out: dict[str, Any] = {
        "padding": padding or "SYMMETRIC",
        "bn_epsilon": eps if bn_epsilon is None else float(bn_epsilon),
        "bn_momentum": momentum,
    }
    if family == "mobilenet_v2":
        w = _mobilenet_width(sd)
        if w != 1.0:
            out["width_multiplier"] = w
    return out


# Families converted in their own modules: family -> "module:function" (imported when used);
# ``function(mapper, name, bn_epsilon=None, padding=None)`` -> (num_classes, (mean, std),
# model overrides giving the checkpoint's architecture, the resolution its weights fix or None).
FAMILY_CONVERTERS = {
    "swin": "jaxvision.convert.torch_swin:convert_swin",
    "efficientnet_v2": "jaxvision.convert.torch_efficientnet_v2:convert_efficientnet_v2",
    "maxvit": "jaxvision.convert.torch_maxvit:convert_maxvit",
    "coatnet": "jaxvision.convert.torch_coatnet:convert_coatnet",
}


def _family_converter(family: str):
    import importlib

    module, function = FAMILY_CONVERTERS[family].split(":")
    return getattr(importlib.import_module(module), function)


def convert_torch(
    source: Any,
    name: str,
    *,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    image_size: int | None = None,
    bn_epsilon: float | None = None,
    padding: str | None = None,
) -> Converted:
    """Map a torchvision/timm state dict onto jaxvision model ``name`` (resnet*, vit_*,
    mobilenet_v2, efficientnet_b0..b7).

    ``bn_epsilon`` / ``padding`` override what the converter assumes for mobilenet_v2 and
    efficientnet (torchvision's conventions, see the module docstring), e.g. ``padding='SAME',
    bn_epsilon=1e-3`` for timm's ``tf_efficientnet_*`` ports."""
    if name is None:
        raise ValueError("convert_torch needs the jaxvision model name (a state dict does not say)")
    from jaxvision import models

    spec = models.get_spec(name)
    sd = load_state_dict(source)
    m = _Mapper(sd)
    family_overrides: dict[str, Any] = {}
    stored_resolution = None
    if spec.family in FAMILY_CONVERTERS:
        num_classes, norm, family_overrides, stored_resolution = _family_converter(spec.family)(
            m, name, bn_epsilon=bn_epsilon, padding=padding)
        bn_epsilon = padding = None  # handled (or refused) by the family's converter
    elif spec.family == "resnet":
        num_classes, norm = _resnet(m), _IMAGENET
    elif spec.family == "vit":
        num_classes, norm = _vit(m), _HALF
    elif spec.family == "hybrid":
        num_classes, norm = _hybrid(m), _HALF
    elif spec.family == "mobilenet_v2":
        num_classes, norm = _mobilenet_v2(m), _IMAGENET
    elif spec.family == "efficientnet":
        num_classes, norm = _efficientnet(m), _IMAGENET
    else:
        raise NotImplementedError(
            f"no PyTorch converter for {name!r} (family {spec.family!r}) yet; supported: resnet*, "
            "vit_*, r50_vit_b16/r26_vit_s32, mobilenet_v2, efficientnet_b0..b7"
        )
    unused = sorted(set(sd) - m.used)
    if unused:
        raise ValueError(f"state-dict entries left unmapped: {unused[:10]}; is this {name}?")
    r = image_size or stored_resolution or spec.default_resolution
    overrides: dict[str, Any] = dict(family_overrides)
    notes: list[str] = []
    if spec.family in ("mobilenet_v2", "efficientnet"):
        overrides.update(_mobile_overrides(spec.family, name, sd, bn_epsilon, padding))
        notes.append(
            f"padding {overrides['padding']}, BatchNorm epsilon {overrides['bn_epsilon']} "
            f"momentum {overrides['bn_momentum']} (Flax convention)"
        )
    elif bn_epsilon is not None or padding is not None:
        raise ValueError(f"bn_epsilon/padding overrides apply to mobilenet_v2/efficientnet, not {name}")
    if spec.family in ("vit", "hybrid"):
        patch = sd["patch_embed.proj.weight"].shape[-1]
        if spec.family == "hybrid":  # 1x1 patches of the backbone's feature map
            patch *= _hybrid_stride(sd)
        tokens = sd["pos_embed"].shape[1] - (1 if "cls_token" in sd else 0)
        stored = int(round(tokens**0.5)) * patch
        if stored != spec.default_resolution:
            overrides["image_size"] = stored
        r = image_size or stored
    converted = Converted(
        model_name=name,
        variables=m.out.variables(),
        num_classes=num_classes,
        image_shape=(r, r, 3),
        mean=tuple(mean or norm[0]),
        std=tuple(std or norm[1]),
        model_overrides=overrides,
        source="torch-state-dict",
        notes=notes + ([] if mean else [f"assumed input normalization mean={norm[0]} std={norm[1]}"]),
    )
    m.out.check_against(converted.create_model(), converted.image_shape)
    return converted
