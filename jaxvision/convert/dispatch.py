"""One entry for every weight source: ``convert('keras'|'torch'|'npz', file_or_model, name)``."""

from __future__ import annotations

from typing import Any

from jaxvision.convert.common import Converted

SOURCES = ("keras", "torch", "npz")


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
    raise ValueError(f"unknown source {source!r}: use one of {', '.join(SOURCES)}")
