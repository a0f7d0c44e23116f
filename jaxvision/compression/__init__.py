"""Model compression: gradual global magnitude pruning, post-training int8 quantization and
knowledge distillation, each with a one-call entry that reports before/after numbers.

    python -m jaxvision.compression prune --workdir RUN --sparsity 0.8 --steps 500 --output OUT
    python -m jaxvision.compression quantize --workdir RUN [--output OUT]
    python -m jaxvision.compression distill --teacher RUN --config configs/<student>.py --output OUT
"""

from __future__ import annotations

from jaxvision.compression import distillation
from jaxvision.compression.distillation import distill, distillation_loss
from jaxvision.compression.fine_tuning import run_steps, top1
from jaxvision.compression.pruning import prune_finetune
from jaxvision.compression.quantization import (
    calibrate_activations,
    dequantize,
    quantize_params,
    quantize_run,
    quantized_apply,
    stored_size,
)
from jaxvision.training.pruning import (
    apply_masks,
    default_prunable,
    global_magnitude_masks,
    polynomial_sparsity,
    prune,
    sparsity_report,
)

__all__ = [
    "apply_masks",
    "calibrate_activations",
    "default_prunable",
    "dequantize",
    "distill",
    "distillation",
    "distillation_loss",
    "global_magnitude_masks",
    "polynomial_sparsity",
    "prune",
    "prune_finetune",
    "quantize_params",
    "quantize_run",
    "quantized_apply",
    "run_steps",
    "sparsity_report",
    "stored_size",
    "top1",
]
