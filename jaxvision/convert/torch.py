"""PyTorch state dicts (torchvision / timm names) -> jaxvision: resnet18..152 and vit_*.

Sources: a ``.safetensors`` file (read with ``safetensors.numpy``; no torch needed), a ``.pt``/
``.pth``/``.bin`` file read with ``torch.load(weights_only=True)`` (tensors only: arbitrary
pickled code is never executed), or an in-memory mapping name -> tensor/array.

Layout conventions handled: conv weights (out, in/groups, kh, kw) -> (kh, kw, in/groups, out);
linear (out, in) -> (in, out); timm's fused ``attn.qkv`` splits into query/key/value
(D, heads, head_dim); ``attn.proj`` becomes the (heads, head_dim, D) output kernel. torchvision
ResNets are v1.5 with symmetric padding and BatchNorm eps 1e-5, as jaxvision's resnets. Inputs are
normalized with ImageNet mean/std (torchvision, timm ResNets) or 0.5/0.5 (timm ViTs); pass
``mean``/``std`` when a checkpoint was trained otherwise.
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


def _resnet(m: _Mapper) -> int:
    m.conv("backbone/stem_conv", "conv1")
    m.bn("backbone/stem_norm", "bn1")
    for stage in range(1, 5):
        j = 0
        while m.has(f"layer{stage}.{j}.conv1.weight"):
            src, dst = f"layer{stage}.{j}", f"backbone/stage{stage}_block{j + 1}"
            i = 1
            while m.has(f"{src}.conv{i}.weight"):
                m.conv(f"{dst}/conv{i}", f"{src}.conv{i}")
                m.bn(f"{dst}/norm{i}", f"{src}.bn{i}")
                i += 1
            if m.has(f"{src}.downsample.0.weight"):
                m.conv(f"{dst}/downsample_conv", f"{src}.downsample.0")
                m.bn(f"{dst}/downsample_norm", f"{src}.downsample.1")
            j += 1
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


def _num_heads(width: int) -> int:
    from jaxvision.models.vit import VIT_SIZES

    for d, _, heads, _ in VIT_SIZES.values():
        if d == width:
            return heads
    raise ValueError(f"no ViT size with hidden size {width}")


def convert_torch(
    source: Any,
    name: str,
    *,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    image_size: int | None = None,
) -> Converted:
    """Map a torchvision/timm state dict onto jaxvision model ``name`` (resnet*, vit_*)."""
    if name is None:
        raise ValueError("convert_torch needs the jaxvision model name (a state dict does not say)")
    from jaxvision import models

    spec = models.get_spec(name)
    sd = load_state_dict(source)
    m = _Mapper(sd)
    if spec.family == "resnet":
        num_classes, norm = _resnet(m), _IMAGENET
    elif spec.family == "vit":
        num_classes, norm = _vit(m), _HALF
    else:
        raise NotImplementedError(
            f"no PyTorch converter for {name!r} (family {spec.family!r}) yet; supported: resnet*, vit_*"
        )
    unused = sorted(set(sd) - m.used)
    if unused:
        raise ValueError(f"state-dict entries left unmapped: {unused[:10]}; is this {name}?")
    r = image_size or spec.default_resolution
    overrides: dict[str, Any] = {}
    if spec.family == "vit":
        patch = sd["patch_embed.proj.weight"].shape[-1]
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
        notes=[] if mean else [f"assumed input normalization mean={norm[0]} std={norm[1]}"],
    )
    m.out.check_against(converted.create_model(), converted.image_shape)
    return converted
