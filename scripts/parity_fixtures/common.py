"""What a parity-fixture builder returns, and the helpers every builder shares.

Runs only where torch/torchvision/timm are installed (``/work/torchvenv``); never imported by
jaxvision or its tests.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

NUM_CLASSES = 10  # every fixture's head: small, and not the 1000 a converter might assume


@dataclasses.dataclass
class Fixture:
    """A tiny reference model and how jaxvision builds the same architecture.

    model: the torch module (its state dict is what the converter reads).
    source: 'torchvision' or 'timm'.
    reference: the constructor call that built ``model`` (for the fixture's ``meta``).
    jaxvision_model: the registered jaxvision name.
    overrides: ``jaxvision.convert.convert('torch', state, name, **overrides)`` keywords: the
      ``models.create`` options giving the same tiny architecture (and variant conventions).
    resolution: input side in pixels (2 images, NCHW, standard normal).
    """

    model: torch.nn.Module
    source: str
    reference: str
    jaxvision_model: str
    overrides: dict[str, Any]
    resolution: int
    num_classes: int = NUM_CLASSES


def randomize_batchnorm(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Non-trivial running statistics (mean ~ N(0, 0.5), var ~ U(0.5, 2)) and affine parameters,
    so that a converter mixing up mean/var/scale/bias or epsilon cannot pass."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(0.5 * torch.randn(n, generator=generator))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=generator))
                if m.affine:
                    m.weight.copy_(1.0 + 0.2 * torch.randn(n, generator=generator))
                    m.bias.copy_(0.2 * torch.randn(n, generator=generator))


def randomize_zero_inits(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Replace exactly-zero parameters (zero-initialized heads, norms, biases, tokens) by small
    random values: a parameter left at zero would hide a mapping error."""
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() and not torch.any(p != 0):
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
