"""torchvision ConvNeXt at tiny widths (one block per stage)."""

from __future__ import annotations

import importlib

import torch

from .common import NUM_CLASSES, Fixture

tv_convnext = importlib.import_module("torchvision.models.convnext")


def convnext() -> Fixture:
    dims, depths = [16, 32, 48, 64], [1, 2, 1, 1]
    nxt = dims[1:] + [None]
    setting = [tv_convnext.CNBlockConfig(d, n, k) for d, n, k in zip(dims, nxt, depths, strict=True)]
    m = tv_convnext.ConvNeXt(setting, num_classes=NUM_CLASSES)
    with torch.no_grad():  # layer scale starts at 1e-6: make the blocks' branches count
        for name, p in m.named_parameters():
            if name.endswith("layer_scale"):
                p.copy_(0.5 + torch.rand(p.shape))
    return Fixture(m, "torchvision", f"torchvision.models.convnext.ConvNeXt([CNBlockConfig(d, next, "
                   f"n) for dims {dims}, depths {depths}], num_classes=10), layer scales U(0.5, 1.5)",
                   "convnext_tiny", {"dims": dims, "depths": depths}, 64)
