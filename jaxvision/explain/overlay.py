"""Heat-map overlays written as PNG with matplotlib's Agg canvas (no display, no pyplot state)."""

from __future__ import annotations

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

__all__ = ["overlay_array", "save_overlay"]


def _as_unit_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3:
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    image = np.clip(image.astype(np.float32), 0.0, 1.0)
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]


def overlay_array(image, heat, *, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """Blend a heat map (H, W) in [0, 1] over an image (H, W, C) -> float32 RGB (H, W, 3) in [0, 1].

    The heat map is resized (bilinear) to the image when their sizes differ.
    """
    import matplotlib

    rgb = _as_unit_image(image)
    heat = np.asarray(heat, np.float32)
    if heat.shape != rgb.shape[:2]:
        from skimage.transform import resize

        heat = resize(heat, rgb.shape[:2], order=1, mode="edge", anti_aliasing=False)
    colored = matplotlib.colormaps[cmap](np.clip(heat, 0, 1))[..., :3].astype(np.float32)
    return (1 - alpha) * rgb + alpha * colored


def save_overlay(
    path: str,
    image,
    heat,
    *,
    title: str | None = None,
    alpha: float = 0.45,
    cmap: str = "jet",
) -> str:
    """Write a PNG with the image (left) and the heat map overlaid on it (right) with a colour bar
    of the heat values; returns ``path``."""
    rgb = _as_unit_image(image)
    fig = Figure(figsize=(6.4, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    left.imshow(rgb, interpolation="nearest")
    left.set_title("input", fontsize=9)
    right.imshow(overlay_array(rgb, heat, alpha=alpha, cmap=cmap), interpolation="nearest")
    right.set_title("heat map", fontsize=9)
    for ax in (left, right):
        ax.axis("off")
    # The overlay blends the colours, so the bar shows the pure colour map of the heat values.
    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap=cmap), ax=right,
                       fraction=0.046, pad=0.04)
    bar.set_label("relevance (per-image max = 1)", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, format="png", bbox_inches="tight")
    return path
