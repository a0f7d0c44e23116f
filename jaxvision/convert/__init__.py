"""Pretrained-weight import: Keras applications, PyTorch/timm/torchvision state dicts and the ViT
paper's .npz files -> jaxvision variables, saved as a run directory usable as ``init_from``.

    python -m jaxvision.convert --source keras|torch|npz --model NAME --input FILE --output DIR

Every converter returns a ``Converted`` (variables, the model overrides and data mean/std under
which logits equal the source model's); ``save_converted`` writes it with
``jaxvision.convert.checkpoint.save_variables``.
"""

from __future__ import annotations

import os
from typing import Any

from jaxvision.convert.common import Converted

__all__ = ["Converted", "convert", "save_converted"]


def convert(source: str, model_or_path: Any, name: str | None = None, **kwargs) -> Converted:
    """Dispatch to ``convert_keras`` / ``convert_torch`` / ``convert_vit_npz`` by ``source``."""
    if source == "keras":
        from jaxvision.convert.keras import convert_keras

        return convert_keras(model_or_path, name, **kwargs)
    if source == "torch":
        from jaxvision.convert.torch import convert_torch

        return convert_torch(model_or_path, name, **kwargs)
    if source == "npz":
        from jaxvision.convert.vit_npz import convert_vit_npz

        return convert_vit_npz(model_or_path, name, **kwargs)
    raise ValueError(f"unknown source {source!r}: use 'keras', 'torch' or 'npz'")


def save_converted(converted: Converted, output: str, *, class_names=None) -> str:
    """Write ``converted`` as checkpoint 0 of run directory ``output`` (config.json records the
    model overrides and the data mean/std/image size)."""
    from jaxvision.config import base_config
    from jaxvision.convert.checkpoint import save_variables

    config = base_config()
    with config.unlocked():
        config.model.name = converted.model_name
        config.model.num_classes = converted.num_classes
        for k, v in converted.model_overrides.items():
            config.model[k] = v
        if "mean" in config.data:
            config.data.mean = tuple(converted.mean)
            config.data.std = tuple(converted.std)
        if "image_size" in config.data:
            config.data.image_size = int(converted.image_shape[0])
        if "channels" in config.data:
            config.data.channels = int(converted.image_shape[-1])
    return save_variables(
        output,
        converted.variables,
        model_name=converted.model_name,
        num_classes=converted.num_classes,
        image_shape=converted.image_shape,
        class_names=class_names,
        config=config,
        extra_meta={
            "source": converted.source,
            "notes": list(converted.notes),
            "model_overrides": dict(converted.model_overrides),
        },
    )


def _describe(c: Converted, output: str) -> str:
    lines = [
        f"wrote {os.path.abspath(output)}: {c.model_name} ({c.num_classes} classes, input {c.image_shape}) "
        f"from {c.source}",
        f"  model overrides: {c.model_overrides or 'none'}",
        f"  data normalization: mean={tuple(round(x, 6) for x in c.mean)} std={tuple(round(x, 6) for x in c.std)}",
    ]
    lines += [f"  note: {n}" for n in c.notes]
    flags = [
        f"--config.init_from={os.path.abspath(output)}",
        f"--config.data.mean='{tuple(c.mean)}'",
        f"--config.data.std='{tuple(c.std)}'",
    ]
    flags += [f"--config.model.{k}={v}" for k, v in c.model_overrides.items()]
    lines.append("  fine-tune with: python -m jaxvision.train --config ... " + " ".join(flags))
    return "\n".join(lines)
