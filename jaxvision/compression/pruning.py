"""Gradual global magnitude pruning, re-exported from :mod:`jaxvision.training.pruning`.

Pruning is a training feature (``--config.pruning.target_sparsity``), so it lives beside training;
this module keeps ``jaxvision.compression.pruning`` working for code that imports it from here.
"""

from jaxvision.training.pruning import (
    PruneState,
    apply_masks,
    default_prunable,
    global_magnitude_masks,
    polynomial_sparsity,
    prune,
    sparsity_report,
)

__all__ = [
    "PruneState",
    "apply_masks",
    "default_prunable",
    "global_magnitude_masks",
    "polynomial_sparsity",
    "prune",
    "sparsity_report",
]
