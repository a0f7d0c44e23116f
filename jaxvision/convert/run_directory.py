"""A converted model as a run directory: checkpoint, a config that fixes its preprocessing, and a
fine-tuning recipe.

``save_converted`` writes ``OUT/checkpoints/0`` (``jaxvision.convert.checkpoint``), ``OUT/config.json``
whose ``data`` section sets every preprocessing value (image size, channels, mean, std, eval crop)
so predict/explain never open a dataset, and ``OUT/finetune.py``, a recipe that fine-tunes the
converted model on an image folder (``python -m jaxvision.train --config OUT/finetune.py
--config.data.path=FOLDER --workdir NEW``). The data section names ``image_folder`` with an
empty path: the converted model's training data is not on this machine, so ``evaluate`` asks for
``--config.data.path=FOLDER`` (or another ``--config.data.name``) instead of downloading anything.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from jaxvision.convert.common import Converted

# Evaluation crop of the source's reference evaluation: torchvision/timm/Keras ImageNet models
# resize the shorter side to 256 and center-crop 224 (crop_pct 0.875, timm's default); the ViT
# paper's checkpoints are evaluated on the resized full image (big_vision: no crop).
TORCH_KERAS_EVAL_CROP = 0.875
VIT_NPZ_EVAL_CROP = 1.0
# Families whose timm checkpoints were evaluated with another crop (timm default_cfg crop_pct).
TIMM_EVAL_CROP = {"mobilevit": 0.9, "mobilevit_v2": 0.888, "efficientformer": 0.95}
FINETUNE_RECIPE = "finetune.py"


def eval_crop_fraction(converted: Converted) -> float:
    if converted.source.startswith("vit-npz"):
        return VIT_NPZ_EVAL_CROP
    if converted.source.startswith("torch"):
        from jaxvision.models import get_spec

        return TIMM_EVAL_CROP.get(get_spec(converted.model_name).family, TORCH_KERAS_EVAL_CROP)
    return TORCH_KERAS_EVAL_CROP


def preprocessing(converted: Converted) -> dict:
    """The ``config.data`` values under which the run's inputs equal the source model's."""
    return {
        "image_size": int(converted.image_shape[0]),
        "channels": int(converted.image_shape[-1]),
        "mean": tuple(float(x) for x in converted.mean),
        "std": tuple(float(x) for x in converted.std),
        "eval_crop_fraction": eval_crop_fraction(converted),
    }


def run_config(converted: Converted):
    """``base_config()`` naming the converted model and fixing its preprocessing."""
    from jaxvision.config import base_config

    config = base_config()
    with config.unlocked():
        config.model.name = converted.model_name
        config.model.num_classes = converted.num_classes
        for k, v in converted.model_overrides.items():
            config.model[k] = v
        config.data.name = "image_folder"
        config.data.path = ""
        # `evaluate --config.data.path=FOLDER` scores every image of a flat folder ('test').
        config.data.val_fraction = 0.0
        config.data.test_fraction = 1.0
        for k, v in preprocessing(converted).items():
            config.data[k] = v
    return config


def finetune_recipe(converted: Converted, output: str) -> str:
    """Text of a recipe file that fine-tunes the converted run on an image folder: the model and
    its overrides, the source's preprocessing, ``init_from`` = the run directory, and the
    image-folder defaults of ``configs/image_folder.py`` with a fine-tuning learning rate."""
    settings = {f"model.{k}": v for k, v in converted.model_overrides.items()}
    settings.update({f"data.{k}": v for k, v in preprocessing(converted).items()})
    lines = "\n".join(f"    c.{k} = {v!r}" for k, v in settings.items())
    return f'''"""Fine-tune {converted.model_name} converted from {converted.source} (written by
jaxvision.convert). Its head is re-initialized when your class count differs.

  python -m jaxvision.train --config {os.path.join(output, FINETUNE_RECIPE)} \\
      --config.data.path=/path/to/images --workdir /path/to/new_run
"""

from jaxvision.config import base_config, lock


def get_config(arg=None):
    del arg
    c = base_config()
    c.model.name = {converted.model_name!r}
{lines}
    c.data.name = "image_folder"
    c.init_from = {os.path.abspath(output)!r}
    c.batch_size = 32
    c.epochs = 10.0
    c.optimizer.name = "adamw"
    c.optimizer.weight_decay = 0.05
    c.schedule.base_lr = 1e-4
    c.schedule.warmup_epochs = 1.0
    c.eval_every_steps = 500
    c.checkpoint_every_steps = 500
    return lock(c)
'''


def save_converted(converted: Converted, output: str, *, class_names: Sequence[str] | None = None,
                   input_file: str | None = None) -> str:
    """Write ``converted`` as checkpoint 0 of run directory ``output`` with its config.json and
    ``finetune.py``; the checkpoint's meta records the source, the input file, the preprocessing,
    the model overrides and the converter's notes. Returns the absolute path.

    Raises FileExistsError when ``output`` already holds checkpoints, ValueError when
    ``class_names`` does not match the head.
    """
    from jaxvision.convert.checkpoint import save_variables

    if class_names is not None and len(class_names) != converted.num_classes:
        raise ValueError(f"{len(class_names)} class names for a {converted.num_classes}-class head")
    out = save_variables(
        output,
        converted.variables,
        model_name=converted.model_name,
        num_classes=converted.num_classes,
        image_shape=converted.image_shape,
        class_names=class_names,
        config=run_config(converted),
        extra_meta={
            "source": converted.source,
            "input_file": os.path.abspath(input_file) if input_file else None,
            "preprocessing": preprocessing(converted),
            "notes": list(converted.notes),
            "model_overrides": dict(converted.model_overrides),
        },
    )
    with open(os.path.join(out, FINETUNE_RECIPE), "w") as f:
        f.write(finetune_recipe(converted, out))
    return out


def describe(converted: Converted, output: str) -> str:
    """What was written and how to use it (printed by ``python -m jaxvision.convert``)."""
    c, out = converted, os.path.abspath(output)
    pre = preprocessing(c)
    lines = [
        f"wrote {out}: {c.model_name} ({c.num_classes} classes, input {c.image_shape}) from "
        f"{c.source}",
        f"  model overrides: {c.model_overrides or 'none'}",
        f"  preprocessing: mean={tuple(round(x, 6) for x in pre['mean'])} "
        f"std={tuple(round(x, 6) for x in pre['std'])} eval crop {pre['eval_crop_fraction']}",
    ]
    lines += [f"  note: {n}" for n in c.notes]
    lines += [
        f"  predict:   python -m jaxvision.predict --workdir {out} IMAGE_OR_FOLDER",
        f"  evaluate:  python -m jaxvision.evaluate --workdir {out} "
        "--config.data.path=FOLDER   (FOLDER/<class>/*.jpg, class order as the head's)",
        f"  fine-tune: python -m jaxvision.train --config {os.path.join(out, FINETUNE_RECIPE)} "
        "--config.data.path=FOLDER --workdir NEW_RUN",
    ]
    return "\n".join(lines)
