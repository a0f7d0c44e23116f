"""Robustness evaluation: adversarial accuracy (FGSM, PGD) and accuracy under common corruptions.

``attacks`` and ``corruptions`` hold the perturbations; ``evaluation`` runs them over a dataset.
"""

from jaxvision.robustness.attacks import Normalization, attack, fgsm, pgd
from jaxvision.robustness.corruptions import CORRUPTIONS, corrupt
from jaxvision.robustness.evaluation import (
    evaluate_robustness,
    format_table,
    normalization_from_config,
)

__all__ = [
    "CORRUPTIONS",
    "Normalization",
    "attack",
    "corrupt",
    "evaluate_robustness",
    "fgsm",
    "format_table",
    "normalization_from_config",
    "pgd",
]
