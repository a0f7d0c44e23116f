"""The ViT paper's ``.npz`` checkpoints (google-research/vision_transformer) -> jaxvision vit_* and
r50_vit_b16 / r26_vit_s32.

Keys of the paper's files (flattened Flax names): ``embedding``, ``cls``,
``Transformer/posembed_input/pos_embedding``, ``Transformer/encoderblock_{i}/{LayerNorm_0,
MultiHeadDotProductAttention_1/{query,key,value,out}, LayerNorm_2, MlpBlock_3/Dense_{0,1}}``,
``Transformer/encoder_norm``, ``head``; hybrids add ``conv_root``, ``gn_root`` and
``block{s}/unit{u}/{conv,gn}{1,2,3,_proj}``. The layouts are the same as jaxvision's (both Flax),
so the conversion is a renaming. Inputs are in [-1, 1] (data mean = std = 0.5).
"""

from __future__ import annotations

import inspect
import os
import re
from typing import Any

import numpy as np

from jaxvision.convert.common import Converted, ParamWriter
from jaxvision.convert.weights_file import check_weights_file

__all__ = ["convert_vit_npz", "load_npz"]

_SIZES = {192: "ti", 384: "s", 768: "b", 1024: "l"}
_BLOCK = {
    "LayerNorm_0": "norm1",
    "LayerNorm_2": "norm2",
    "MultiHeadDotProductAttention_1": "attn",
    "MlpBlock_3/Dense_0": "mlp/fc1",
    "MlpBlock_3/Dense_1": "mlp/fc2",
}


def load_npz(source: Any) -> dict[str, np.ndarray]:
    """A path to an .npz (never unpickled: ``allow_pickle=False``) or a mapping of arrays."""
    if isinstance(source, str | os.PathLike):
        check_weights_file("npz", source)
        try:
            with np.load(source, allow_pickle=False) as f:
                return {k: np.asarray(f[k]) for k in f.files}
        except Exception as e:  # noqa: BLE001 - a damaged member, as one message (never unpickled)
            if "allow_pickle" in str(e):  # NumPy's advice would be to unpickle: never
                raise ValueError(f"{os.fspath(source)!r} holds object (pickled) arrays, which are "
                                 "never loaded; a ViT-paper .npz holds numeric arrays only") from None
            raise ValueError(f"{os.fspath(source)!r} is not a readable .npz file "
                             f"({type(e).__name__}: {e}); check the download") from None
    return {k: np.asarray(v) for k, v in dict(source).items()}


def _guess_name(w: dict[str, np.ndarray]) -> str:
    width = w["embedding/kernel"].shape[-1]
    if width not in _SIZES:
        raise ValueError(
            f"hidden size {width} is none of ViT-Ti/S/B/L's {sorted(_SIZES)}; pass --model"
        )
    if "conv_root/kernel" in w:
        units3 = len({k.split("/")[1] for k in w if k.startswith("block3/")})
        return "r50_vit_b16" if units3 == 9 else "r26_vit_s32"
    return f"vit_{_SIZES[width]}{w['embedding/kernel'].shape[0]}"


def convert_vit_npz(
    source: Any, name: str | None = None, *, drop_pre_logits: bool = False
) -> Converted:
    """Map a ViT-paper checkpoint onto ``name`` (guessed from shapes when None).

    ``drop_pre_logits``: ImageNet-21k checkpoints have a ``pre_logits`` layer jaxvision's ViT does
    not; dropping it (and the head) gives a feature extractor to fine-tune, not the same logits.
    """
    w = load_npz(source)
    name = name or _guess_name(w)
    out = ParamWriter()
    used: set[str] = set()

    def take(key):
        if key not in w:
            raise ValueError(f"key {key!r} not in the npz; is it a ViT-paper checkpoint of {name}?")
        used.add(key)
        return w[key]

    def copy(src, dst, leaves=("kernel", "bias")):
        for leaf in leaves:
            out.put(f"{dst}/{leaf}", take(f"{src}/{leaf}"))

    copy("embedding", "patch_embed/proj")
    if "cls" in w:
        out.put("cls/cls", take("cls"))
    pos = take("Transformer/posembed_input/pos_embedding")
    out.put("pos_embed/embedding", pos)
    blocks = sorted(
        {int(m.group(1)) for k in w if (m := re.match(r"Transformer/encoderblock_(\d+)/", k))}
    )
    for i in blocks:
        src = f"Transformer/encoderblock_{i}"
        copy(f"{src}/LayerNorm_0", f"encoder/block_{i}/norm1", ("scale", "bias"))
        copy(f"{src}/LayerNorm_2", f"encoder/block_{i}/norm2", ("scale", "bias"))
        for p in ("query", "key", "value", "out"):
            copy(f"{src}/MultiHeadDotProductAttention_1/{p}", f"encoder/block_{i}/attn/{p}")
        copy(f"{src}/MlpBlock_3/Dense_0", f"encoder/block_{i}/mlp/fc1")
        copy(f"{src}/MlpBlock_3/Dense_1", f"encoder/block_{i}/mlp/fc2")
    copy("Transformer/encoder_norm", "encoder/norm", ("scale", "bias"))
    notes = []
    num_classes = 0
    if "pre_logits/kernel" in w:
        if not drop_pre_logits:
            raise ValueError(
                "this checkpoint has a 'pre_logits' (representation) layer that jaxvision's ViT does not "
                "have; pass drop_pre_logits=True (--drop-pre-logits) to import the encoder for fine-tuning"
            )
        used.update({"pre_logits/kernel", "pre_logits/bias", "head/kernel", "head/bias"})
        notes.append(
            "pre_logits and head dropped: a feature extractor (num_classes=0) to fine-tune"
        )
    elif "head/kernel" in w:
        copy("head", "head")
        num_classes = int(w["head/kernel"].shape[-1])
    if "conv_root/kernel" in w:  # hybrid: BiT ResNet (StdConv + GroupNorm)
        out.put("backbone/stem_conv/kernel", take("conv_root/kernel"))
        copy("gn_root", "backbone/stem_norm", ("scale", "bias"))
        for key in sorted(k for k in w if re.match(r"block\d+/unit\d+/", k)):
            s, u, layer, leaf = re.match(r"block(\d+)/unit(\d+)/(\w+)/(\w+)$", key).groups()
            dst = {"conv_proj": "downsample_conv", "gn_proj": "downsample_norm"}.get(
                layer, layer.replace("gn", "norm")
            )
            out.put(f"backbone/stage{s}_block{u}/{dst}/{leaf}", take(key))
    unused = sorted(set(w) - used)
    if unused:
        raise ValueError(f"npz keys left unmapped: {unused[:10]}; is this a checkpoint of {name}?")

    from jaxvision import models

    spec = models.get_spec(name)
    accepted = set(inspect.signature(spec.builder).parameters)
    overrides: dict[str, Any] = {}
    patch = w["embedding/kernel"].shape[0]
    stride = 16 if name.startswith("r50") else 32 if name.startswith("r26") else 1
    tokens = pos.shape[1] - (1 if "cls" in w else 0)
    side = int(round(tokens**0.5))
    resolution = side * patch * stride
    if resolution != spec.default_resolution:
        if "image_size" not in accepted:
            raise ValueError(
                f"the checkpoint's position embedding is for {resolution} px but {name} is built for "
                f"{spec.default_resolution} px and takes no image_size option"
            )
        overrides["image_size"] = resolution
    converted = Converted(
        model_name=name,
        variables=out.variables(),
        num_classes=num_classes,
        image_shape=(
            resolution,
            resolution,
            int(w["embedding/kernel"].shape[2]) if stride == 1 else 3,
        ),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        model_overrides=overrides,
        source=f"vit-npz:{os.path.basename(os.fspath(source)) if isinstance(source, str | os.PathLike) else 'arrays'}",
        notes=notes,
    )
    out.check_against(converted.create_model(), converted.image_shape)
    return converted
