"""Inputs the command-line tests share: a torchvision-named ResNet-18 state dict written with
numpy (no torch needed), and a small image folder."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def _bn(sd, name, n, rng):
    sd[f"{name}.weight"] = rng.uniform(0.5, 1.5, n).astype(np.float32)
    sd[f"{name}.bias"] = rng.normal(0, 0.1, n).astype(np.float32)
    sd[f"{name}.running_mean"] = rng.normal(0, 0.1, n).astype(np.float32)
    sd[f"{name}.running_var"] = rng.uniform(0.5, 1.5, n).astype(np.float32)
    sd[f"{name}.num_batches_tracked"] = np.array(0, np.int64)


def _conv(sd, name, cout, cin, k, rng):
    sd[f"{name}.weight"] = (rng.normal(0, 1, (cout, cin, k, k)) *
                            np.sqrt(2.0 / (cin * k * k))).astype(np.float32)


def resnet18_state_dict(num_classes: int, seed: int = 0) -> dict[str, np.ndarray]:
    """torchvision ``resnet18(num_classes)``'s state-dict names and shapes, He-normal weights."""
    rng = np.random.default_rng(seed)
    sd: dict[str, np.ndarray] = {}
    _conv(sd, "conv1", 64, 3, 7, rng)
    _bn(sd, "bn1", 64, rng)
    cin = 64
    for i, width in enumerate((64, 128, 256, 512), start=1):
        for j in range(2):
            p = f"layer{i}.{j}"
            _conv(sd, f"{p}.conv1", width, cin, 3, rng)
            _bn(sd, f"{p}.bn1", width, rng)
            _conv(sd, f"{p}.conv2", width, width, 3, rng)
            _bn(sd, f"{p}.bn2", width, rng)
            if j == 0 and cin != width:
                _conv(sd, f"{p}.downsample.0", width, cin, 1, rng)
                _bn(sd, f"{p}.downsample.1", width, rng)
            cin = width
    sd["fc.weight"] = rng.normal(0, 0.05, (num_classes, 512)).astype(np.float32)
    sd["fc.bias"] = np.zeros(num_classes, np.float32)
    return sd


def write_safetensors(path: str, state_dict: dict[str, np.ndarray]) -> str:
    from safetensors.numpy import save_file

    save_file(state_dict, path)
    return path


def image_folder(root: str, classes: tuple[str, ...], per_class: int, size: int = 48,
                 seed: int = 0) -> str:
    """``root/<class>/<i>.png`` RGB noise images with a class-dependent mean colour."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        os.makedirs(os.path.join(root, name), exist_ok=True)
        for i in range(per_class):
            base = np.array([60 + 60 * c, 120, 200 - 60 * c], np.float32)
            img = np.clip(base + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(os.path.join(root, name, f"{i}.png"))
    return root
