"""Common corruptions (Hendrycks & Dietterich 2019) at severities 1..5, on pixel images.

Every function takes pixels float (N, H, W, C) in [0, 1] (host numpy) and returns the corrupted
batch with the same shape, dtype float32, clipped to [0, 1]. The severity constants are those of
ImageNet-C for images larger than 64 px and of CIFAR-10-C for small images (28-64 px), because a
blur of sigma 6 px or JPEG quality 7 destroys a 32 px image completely.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = ["CORRUPTIONS", "corrupt", "gaussian_noise", "gaussian_blur", "contrast", "jpeg"]

# severity 1..5 -> parameter; (small images <= 64 px, large images)
_CONSTANTS = {
    "gaussian_noise": ((0.04, 0.06, 0.08, 0.09, 0.10), (0.08, 0.12, 0.18, 0.26, 0.38)),
    "gaussian_blur": ((0.4, 0.6, 0.7, 0.8, 1.0), (1.0, 2.0, 3.0, 4.0, 6.0)),
    "contrast": ((0.75, 0.5, 0.4, 0.3, 0.15), (0.4, 0.3, 0.2, 0.1, 0.05)),
    "jpeg": ((80, 65, 58, 50, 40), (25, 18, 15, 10, 7)),
}


def _param(name: str, severity: int, images: np.ndarray):
    if not 1 <= severity <= 5:
        raise ValueError(f"severity must be an integer in 1..5, got {severity}")
    if images.ndim != 4:
        raise ValueError(f"{name} expects a batch (N, H, W, C), got shape {images.shape}")
    small = min(images.shape[1:3]) <= 64
    return _CONSTANTS[name][0 if small else 1][severity - 1]


def gaussian_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = _param("gaussian_noise", severity, images)
    out = images + rng.normal(size=images.shape) * sigma
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def gaussian_blur(images: np.ndarray, severity: int, rng=None) -> np.ndarray:
    sigma = _param("gaussian_blur", severity, images)
    out = ndimage.gaussian_filter(
        images.astype(np.float32), sigma=(0, sigma, sigma, 0), mode="nearest"
    )
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def contrast(images: np.ndarray, severity: int, rng=None) -> np.ndarray:
    c = _param("contrast", severity, images)
    means = images.mean(axis=(1, 2, 3), keepdims=True)
    return np.clip((images - means) * c + means, 0.0, 1.0).astype(np.float32)


def jpeg(images: np.ndarray, severity: int, rng=None) -> np.ndarray:
    quality = _param("jpeg", severity, images)
    channels = images.shape[-1]
    if channels not in (1, 3):
        raise ValueError(f"jpeg corruption needs 1 or 3 channels, got {channels}")
    out = np.empty(images.shape, np.float32)
    for i, img in enumerate(np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)):
        pil = Image.fromarray(
            img[..., 0] if channels == 1 else img, mode="L" if channels == 1 else "RGB"
        )
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=int(quality))
        dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())), np.float32) / 255.0
        out[i] = dec.reshape(img.shape)
    return out


CORRUPTIONS = {
    "gaussian_noise": gaussian_noise,
    "gaussian_blur": gaussian_blur,
    "contrast": contrast,
    "jpeg": jpeg,
}


def corrupt(name: str, images: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """Apply corruption ``name`` (one of ``CORRUPTIONS``) at ``severity`` (1..5) to pixels in [0, 1]."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; choose from {sorted(CORRUPTIONS)}")
    return CORRUPTIONS[name](
        np.asarray(images, np.float32), int(severity), np.random.default_rng(seed)
    )
