"""PyTorch state dicts (torchvision / timm names) -> jaxvision: resnet18..152, vit_*,
r50_vit_b16 / r26_vit_s32 (timm ``vit_base_r50_s16_224`` names), mobilenet_v2 (any width),
efficientnet_b0..b7 (torchvision and timm, incl. timm's ``tf_efficientnet_*`` ports); and, in
their own ``torch_<family>`` modules registered in ``_FAMILIES``: densenet121, vgg*, alexnet,
googlenet (torchvision), mobilevit_* (timm), mobilenet_v3_* and convnext_* (torchvision).
Reference parity of every family is checked in CI on the fixtures of
``scripts/make_parity_fixtures.py`` (``tests/convert/test_parity_fixtures.py``).

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
ports need ``padding='SAME', bn_epsilon=1e-3`` (their state-dict names are the same as the
non-TF ones): selected from a file name containing ``tf_efficientnet``, else by those arguments
(``--padding``/``--bn_epsilon`` of ``python -m jaxvision.convert``).

Hybrids: timm's ResNetV2 backbone standardizes weights as (w - mean) / sqrt(var + 1e-8) with
GroupNorm eps 1e-5; the converter sets the model option ``weight_standardization='timm'``
(recorded in the run's config), while the ViT paper's .npz weights keep big_vision's
(w - mean) / (std + 1e-5) with eps 1e-6.

Converted arrays are copies: changing the source tensors afterwards does not change them.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxvision.convert.common import Converted
from jaxvision.convert.torch_mapper import (
    StateDictMapper,
    classifier,
    conv_norm,
    encoder_block,
    squeeze_excite,
)
from jaxvision.convert.weights_file import check_weights_file, is_safetensors

__all__ = ["convert_torch", "load_state_dict"]

_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
_HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
_ZERO_ONE = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # inputs in [0, 1] (timm MobileViT)


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
        check_weights_file("torch", path)
        if is_safetensors(path):
            try:
                from safetensors.numpy import load_file
            except ImportError as e:
                raise ImportError(
                    f"reading {path!r} needs the safetensors package (pip install safetensors)"
                ) from e

            try:
                sd = load_file(path)
            except Exception as e:  # noqa: BLE001 - a damaged or foreign file, as one message
                raise ValueError(f"{path!r} is not a readable .safetensors file ({e}); check the "
                                 "download or give the original file") from None
        else:
            try:
                import torch
            except ImportError as e:
                raise ImportError(
                    f"reading {path!r} needs torch (pip install torch), or convert it to .safetensors"
                ) from e
            try:
                sd = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001 - a damaged or foreign file, as one message
                raise ValueError(f"{path!r} is not a readable PyTorch state dict ({e}); check "
                                 "the download or give the original file") from None
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


def _resnet_blocks(m: StateDictMapper, block, norm, norm_name: str, down_conv: str, down_norm: str,
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


def _resnet(m: StateDictMapper, overrides=None) -> int:
    m.conv("backbone/stem_conv", "conv1")
    m.bn("backbone/stem_norm", "bn1")
    _resnet_blocks(m, lambda i, j: f"layer{i}.{j}", m.bn, "bn", "downsample.0", "downsample.1",
                   first_stage=1)
    if m.has("fc.weight"):
        m.linear("head", "fc")
        return int(m.sd["fc.weight"].shape[0])
    return 0


def _vit(m: StateDictMapper, overrides=None) -> int:
    sd = m.sd
    m.conv("patch_embed/proj", "patch_embed.proj", bias=True)
    if m.has("cls_token"):
        m.out.put("cls/cls", m.take("cls_token"))
    if m.has("dist_token"):  # DeiT distilled
        m.out.put("dist/cls", m.take("dist_token"))
    m.out.put("pos_embed/embedding", m.take("pos_embed"))
    width = sd["patch_embed.proj.weight"].shape[0]
    heads = (overrides or {}).get("num_heads") or _num_heads(width)
    i = 0
    while m.has(f"blocks.{i}.norm1.weight"):
        src, dst = f"blocks.{i}", f"encoder/block_{i}"
        encoder_block(m, dst, src, heads)
        i += 1
    m.ln("encoder/norm", "norm")
    if m.has("head_dist.weight"):
        m.linear("head_dist", "head_dist")
    if m.has("head.weight"):
        m.linear("head", "head")
        return int(sd["head.weight"].shape[0])
    return 0


_TIMM_HYBRID_BACKBONE = "patch_embed.backbone"


def _hybrid(m: StateDictMapper, overrides=None) -> int:
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
    return _vit(m, overrides)


def _hybrid_stride(sd) -> int:
    """Output stride of the hybrid's backbone: stem /4 (conv /2, max pool /2), then /2 per stage
    after the first."""
    from jaxvision.models.hybrid import backbone_stride

    stages = {k.split(".")[3] for k in sd if k.startswith(f"{_TIMM_HYBRID_BACKBONE}.stages.")}
    return backbone_stride(len(stages))


def _is_timm_mobile(m: StateDictMapper) -> bool:
    return m.has("conv_stem.weight")


def _timm_mobile_blocks(m: StateDictMapper, dst_name) -> None:
    """timm's EfficientNet-builder blocks ``blocks.{s}.{j}``: DepthwiseSeparable (conv_dw, bn1,
    [se], conv_pw, bn2) or InvertedResidual (conv_pw, bn1, conv_dw, bn2, [se], conv_pwl, bn3)."""
    s, k = 0, 0
    while m.has(f"blocks.{s}.0.conv_dw.weight"):
        j = 0
        while m.has(f"blocks.{s}.{j}.conv_dw.weight"):
            src, dst = f"blocks.{s}.{j}", dst_name(s, j, k)
            if m.has(f"{src}.conv_pwl.weight"):
                conv_norm(m, f"{dst}/expand", f"{src}.conv_pw", f"{src}.bn1")
                conv_norm(m, f"{dst}/dw", f"{src}.conv_dw", f"{src}.bn2")
                project = (f"{src}.conv_pwl", f"{src}.bn3")
            else:
                conv_norm(m, f"{dst}/dw", f"{src}.conv_dw", f"{src}.bn1")
                project = (f"{src}.conv_pw", f"{src}.bn2")
            if m.has(f"{src}.se.conv_reduce.weight"):
                squeeze_excite(m, dst, f"{src}.se.conv_reduce", f"{src}.se.conv_expand")
            conv_norm(m, f"{dst}/project", *project)
            j, k = j + 1, k + 1
        s += 1


def _timm_mobile(m: StateDictMapper, block_name) -> int:
    """A whole timm MobileNetV2/EfficientNet: stem, blocks (named by ``block_name(stage, index in
    stage, running index)``), head conv, classifier."""
    conv_norm(m, "stem", "conv_stem", "bn1")
    _timm_mobile_blocks(m, block_name)
    conv_norm(m, "head_conv", "conv_head", "bn2")
    return classifier(m, "classifier")


def _mobilenet_v2(m: StateDictMapper, overrides=None) -> int:
    """torchvision ``features.{0..18}`` / ``classifier.1``, or timm ``mobilenetv2_*``."""
    if _is_timm_mobile(m):
        return _timm_mobile(m, lambda s, j, k: f"block{k + 1}")
    conv_norm(m, "stem", "features.0.0", "features.0.1")
    k = 1
    while m.has(f"features.{k}.conv.0.0.weight"):
        src, dst = f"features.{k}.conv", f"block{k}"
        if m.has(f"{src}.3.weight"):  # 1x1 expand, dw, 1x1 project + BN
            conv_norm(m, f"{dst}/expand", f"{src}.0.0", f"{src}.0.1")
            conv_norm(m, f"{dst}/dw", f"{src}.1.0", f"{src}.1.1")
            conv_norm(m, f"{dst}/project", f"{src}.2", f"{src}.3")
        else:  # expand ratio 1: dw, 1x1 project + BN
            conv_norm(m, f"{dst}/dw", f"{src}.0.0", f"{src}.0.1")
            conv_norm(m, f"{dst}/project", f"{src}.1", f"{src}.2")
        k += 1
    conv_norm(m, "head_conv", f"features.{k}.0", f"features.{k}.1")
    return classifier(m, "classifier.1")


def _efficientnet(m: StateDictMapper, overrides=None) -> int:
    """torchvision ``features.0`` (stem), ``features.{1..7}.{j}.block.*`` (MBConv: [expand], dw,
    SE fc1/fc2, project), ``features.8`` (head conv), ``classifier.1``; or timm names."""
    if _is_timm_mobile(m):
        return _timm_mobile(m, lambda s, j, k: f"stage{s + 1}_block{j + 1}")
    conv_norm(m, "stem", "features.0.0", "features.0.1")
    s = 1
    while m.has(f"features.{s}.0.block.0.0.weight"):
        j = 0
        while m.has(f"features.{s}.{j}.block.0.0.weight"):
            src, dst = f"features.{s}.{j}.block", f"stage{s}_block{j + 1}"
            i = 0
            if m.has(f"{src}.3.0.weight"):  # expand ratio != 1: a 1x1 expand comes first
                conv_norm(m, f"{dst}/expand", f"{src}.0.0", f"{src}.0.1")
                i = 1
            conv_norm(m, f"{dst}/dw", f"{src}.{i}.0", f"{src}.{i}.1")
            squeeze_excite(m, dst, f"{src}.{i + 1}.fc1", f"{src}.{i + 1}.fc2")
            conv_norm(m, f"{dst}/project", f"{src}.{i + 2}.0", f"{src}.{i + 2}.1")
            j += 1
        s += 1
    conv_norm(m, "head_conv", f"features.{s}.0", f"features.{s}.1")
    return classifier(m, "classifier.1")


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


# family -> (state-dict mapper, default input normalization). A mapper ``fn(m, overrides) -> num
# classes`` writes every entry of ``m.sd`` (``overrides``: the model options the caller gave);
# "module:function" entries are imported when used (one module per family added later).
_FAMILIES: dict[str, tuple[Any, tuple]] = {
    "resnet": (_resnet, _IMAGENET),
    "vit": (_vit, _HALF),
    "deit": (_vit, _IMAGENET),
    "hybrid": (_hybrid, _HALF),
    "mobilenet_v2": (_mobilenet_v2, _IMAGENET),
    "efficientnet": (_efficientnet, _IMAGENET),
    "densenet": ("jaxvision.convert.torch_densenet:map_densenet", _IMAGENET),
    "vgg": ("jaxvision.convert.torch_vgg:map_vgg", _IMAGENET),
    "alexnet": ("jaxvision.convert.torch_alexnet:map_alexnet", _IMAGENET),
    "googlenet": ("jaxvision.convert.torch_googlenet:map_googlenet", _HALF),
    "mobilevit": ("jaxvision.convert.torch_mobilevit:map_mobilevit", _ZERO_ONE),
    "mobilevit_v2": ("jaxvision.convert.torch_mobilevit_v2:map_mobilevit_v2", _ZERO_ONE),
    "efficientformer": ("jaxvision.convert.torch_efficientformer:map_efficientformer", _IMAGENET),
    "swin": ("jaxvision.convert.torch_swin:map_swin", _IMAGENET),
    "efficientnet_v2": ("jaxvision.convert.torch_efficientnet_v2:map_efficientnet_v2", _IMAGENET),
    "maxvit": ("jaxvision.convert.torch_maxvit:map_maxvit", _IMAGENET),
    "coatnet": ("jaxvision.convert.torch_coatnet:map_coatnet", _IMAGENET),
    "mobilenet_v3": ("jaxvision.convert.torch_mobilenet_v3:map_mobilenet_v3", _IMAGENET),
    "convnext": ("jaxvision.convert.torch_convnext:map_convnext", _IMAGENET),
    "fastvit": ("jaxvision.convert.torch_fastvit:map_fastvit", _IMAGENET),
}


def _family_mapper(family: str, name: str):
    if family not in _FAMILIES:
        raise NotImplementedError(
            f"no PyTorch converter for {name!r} (family {family!r}); families with one: "
            f"{', '.join(sorted(_FAMILIES))}"
        )
    fn, norm = _FAMILIES[family]
    if isinstance(fn, str):
        module, attr = fn.split(":")
        fn = getattr(importlib.import_module(module), attr)
    return fn, norm


# timm checkpoints of TensorFlow-trained weights, recognized by file name: TF 'SAME' padding and
# BatchNorm eps 1e-3 (timm's tf_efficientnet_*/tf_mobilenetv3_* set both); AdvProp ('ap')
# weights expect inputs scaled to [-1, 1].
_TF_PORT = re.compile(r"(^|[^a-z])tf_(efficientnet|mobilenet)")
_ADVPROP = re.compile(r"[._-]ap([._-]|$)|advprop")


def variant_from_name(path: str) -> dict[str, Any]:
    """Conventions a checkpoint's file name reveals: ``{'padding': 'SAME', 'bn_epsilon': 1e-3}``
    for timm's ``tf_efficientnet_*`` ports (plus ``mean``/``std`` 0.5 for AdvProp ``ap``
    weights); ``{}`` otherwise."""
    base = os.path.basename(os.fspath(path)).lower()
    if not _TF_PORT.search(base):
        return {}
    out: dict[str, Any] = {"padding": "SAME", "bn_epsilon": 1e-3}
    if _ADVPROP.search(base):
        out.update(mean=_HALF[0], std=_HALF[1])
    return out


def _derived_overrides(family, name, sd, given) -> tuple[dict[str, Any], list[str]]:
    """Model options the state dict implies (given ones win), with notes for the user."""
    overrides: dict[str, Any] = {}
    notes: list[str] = []
    if family in ("mobilenet_v2", "efficientnet"):
        overrides.update(_mobile_overrides(family, name, sd, given.get("bn_epsilon"),
                                           given.get("padding")))
        if family == "mobilenet_v2" and "width_multiplier" in given:
            overrides.pop("width_multiplier", None)
        notes.append(
            f"padding {overrides['padding']}, BatchNorm epsilon {overrides['bn_epsilon']} "
            f"momentum {overrides['bn_momentum']} (Flax convention)"
        )
    elif family == "efficientnet_v2":
        from jaxvision.convert.torch_efficientnet_v2 import conventions

        overrides.update(conventions(sd, given))
        notes.append(f"padding {overrides['padding']}, BatchNorm epsilon {overrides['bn_epsilon']}")
    elif given.get("bn_epsilon") is not None or given.get("padding") is not None:
        raise ValueError(f"bn_epsilon/padding overrides apply to mobilenet_v2/efficientnet(_v2), "
                         f"not {name}")
    if family == "hybrid" and "weight_standardization" not in given:
        overrides["weight_standardization"] = "timm"
        notes.append("timm's weight standardization: (w - mean) / sqrt(var + 1e-8), GroupNorm "
                     "eps 1e-5 (the ViT paper's .npz weights use big_vision's, via --source npz)")
    return overrides, notes


def _stored_resolution(family, sd) -> int | None:
    """The resolution a ViT's position embedding (a CoAtNet's bias tables) was made for (None
    for CNNs)."""
    if family == "coatnet":
        from jaxvision.convert.torch_coatnet import stored_resolution

        return stored_resolution(sd)
    if family not in ("vit", "hybrid", "deit"):
        return None
    patch = sd["patch_embed.proj.weight"].shape[-1]
    if family == "hybrid":  # 1x1 patches of the backbone's feature map
        patch *= _hybrid_stride(sd)
    tokens = sd["pos_embed"].shape[1] - ("cls_token" in sd) - ("dist_token" in sd)
    return int(round(tokens**0.5)) * patch


def convert_torch(
    source: Any,
    name: str,
    *,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    image_size: int | None = None,
    bn_epsilon: float | None = None,
    padding: str | None = None,
    **model_overrides,
) -> Converted:
    """Map a torchvision/timm state dict onto jaxvision model ``name`` (families: see
    ``_FAMILIES``; the module docstring lists the conventions).

    Args:
      source: a state-dict file or mapping (see ``load_state_dict``).
      name: the registered jaxvision model.
      mean, std: the input normalization the weights expect (default: the family's usual one,
        or what the file name reveals, see ``variant_from_name``).
      image_size: input resolution (default: what a ViT's position embedding was made for, or
        the model's default).
      bn_epsilon, padding: BatchNorm epsilon / 'SAME' vs 'SYMMETRIC' padding of mobilenet_v2 and
        efficientnet (e.g. ``padding='SAME', bn_epsilon=1e-3`` for timm's ``tf_efficientnet_*``,
        detected from a file name containing ``tf_efficientnet``).
      **model_overrides: ``models.create`` options of the architecture the weights belong to
        (e.g. a non-default width); they are recorded in ``Converted.model_overrides``.

    Returns:
      ``Converted``; its arrays are copies (they never alias the source tensors).

    Raises:
      ValueError: the state dict does not fit the model (missing, unmapped or mis-shaped
      entries); NotImplementedError: no converter for the family; FileNotFoundError.
    """
    if name is None:
        raise ValueError("convert_torch needs the jaxvision model name (a state dict does not say)")
    from jaxvision import models

    spec = models.get_spec(name)
    if not isinstance(source, Mapping):
        detected = variant_from_name(source)
        padding = padding if padding is not None else detected.get("padding")
        bn_epsilon = bn_epsilon if bn_epsilon is not None else detected.get("bn_epsilon")
        mean, std = mean or detected.get("mean"), std or detected.get("std")
    given = {**model_overrides, "bn_epsilon": bn_epsilon, "padding": padding}
    mapper, norm = _family_mapper(spec.family, name)
    sd = load_state_dict(source)
    m = StateDictMapper(sd)
    num_classes = mapper(m, model_overrides)
    unused = sorted(set(sd) - m.used)
    if unused:
        raise ValueError(f"state-dict entries left unmapped: {unused[:10]}; is this {name}?")
    overrides, notes = _derived_overrides(spec.family, name, sd, given)
    overrides.update(model_overrides)
    stored = _stored_resolution(spec.family, sd)
    if stored is not None and stored != spec.default_resolution:
        overrides.setdefault("image_size", stored)
    r = image_size or stored or spec.default_resolution
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
