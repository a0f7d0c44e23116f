"""Pretrained-weight import: Keras applications, PyTorch/timm/torchvision state dicts and the ViT
paper's .npz files -> jaxvision variables, saved as a run directory that evaluate, predict,
explain and ``init_from`` read.

    python -m jaxvision.convert --source keras|torch|npz --model NAME --input FILE --output DIR

Every converter returns a ``Converted`` (variables, the model overrides and data mean/std under
which logits equal the source model's); ``save_converted`` writes it as a run directory
(``jaxvision.convert.run_directory``).
"""

from jaxvision.convert.common import Converted
from jaxvision.convert.dispatch import SOURCES, convert
from jaxvision.convert.run_directory import describe, finetune_recipe, save_converted

__all__ = ["SOURCES", "Converted", "convert", "describe", "finetune_recipe", "save_converted"]
