"""What every export format serves: a trained run's classifier with its evaluation transform.

``Servable.from_run(run)`` gathers the model, its variables (EMA when the run kept one, as
``load_run`` gives), class names and the run's resolved data settings. Its JAX functions map
uint8 RGB pixels (N, H, W, 3) to float32 class probabilities (N, K), the same computation as
``jaxvision.predict`` (``preprocess_for_eval`` -> ``model.apply(train=False)`` -> softmax).

Convolutions are traced with XLA's own lowering (``layers.set_conv_impl('xla')``): the exported
graph then holds real convolution ops (TFLite ``CONV_2D`` / ``DEPTHWISE_CONV_2D``, cuDNN on GPU
serving) instead of the CPU-only matmul rewrites; results agree to float rounding.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxvision import layers
from jaxvision.data import preprocess
from jaxvision.evaluation import run_input
from jaxvision.evaluation.predictor import class_names_of
from jaxvision.export.preprocessing import FixedSizeTransform, fixed_size_transform

FORMATS = ("saved_model", "tflite", "tflite_int8", "stablehlo")


class ExportError(ValueError):
    """The model cannot be exported in the asked format; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class Servable:
    """A run's classifier ready to export.

    model: Linen module (float32 compute). variables: {'params', 'batch_stats'}.
    class_names: K names, index = class id. resolved: the run's concrete data settings.
    native_hw: (H, W) of every image of the dataset, or None when sizes vary.
    model_name, step: for messages and metadata.
    """

    model: object
    variables: dict
    class_names: tuple[str, ...]
    resolved: preprocess.Resolved
    native_hw: tuple[int, int] | None
    model_name: str
    step: int

    @classmethod
    def from_run(cls, run) -> Servable:
        # From the run directory alone (no dataset opened): export works offline on any run.
        meta = run_input.run_meta(run)
        resolved = preprocess.resolve(run.config.data, meta)
        variables = {k: v for k, v in run.variables.items() if v}
        x = jnp.zeros((1,) + preprocess.eval_output_shape(resolved))
        logits = jax.eval_shape(lambda v: run.model.apply(v, x, train=False), variables)
        return cls(
            model=run.model,
            variables=variables,
            class_names=tuple(class_names_of(run, logits.shape[-1])),
            resolved=resolved,
            native_hw=run_input.native_image_hw(run, meta),
            model_name=str(run.config.model.name),
            step=int(run.step),
        )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def model_input_shape(self) -> tuple[int, int, int]:
        """(S, S, C): what the model itself sees after the evaluation transform."""
        return preprocess.eval_output_shape(self.resolved)

    def default_input_hw(self) -> tuple[int, int]:
        """Fixed input size for formats that need one: the dataset's own image size, or (when
        sizes vary) the square that the evaluation resize maps onto the crop unchanged."""
        if self.native_hw is not None:
            return self.native_hw
        side = preprocess.crop_size_for_eval(self.resolved)
        return side, side

    def logits(self, variables, images):
        """float32 model inputs (N, S, S, C) -> float32 logits (N, K)."""
        return jnp.asarray(self.model.apply(variables, images, train=False), jnp.float32)

    def probabilities(self, variables, images):
        """float32 model inputs (N, S, S, C) -> float32 probabilities (N, K)."""
        return jax.nn.softmax(self.logits(variables, images), axis=-1)

    def pixels_to_logits(self, input_hw: Sequence[int]):
        """``f(variables, uint8 (N, H, W, 3)) -> float32 logits (N, K)`` for one input size, with
        the evaluation transform as fixed linear maps (``FixedSizeTransform``)."""
        transform: FixedSizeTransform = fixed_size_transform(self.resolved, tuple(input_hw))

        def f(variables, images_uint8):
            return self.logits(variables, transform(images_uint8))

        return f


@contextlib.contextmanager
def portable_convolutions():
    """Trace convolutions as XLA convolution ops (see module docstring); restores the choice
    made before."""
    with layers.using_conv_impl("xla"):
        yield


def labels_path(output: str) -> str:
    """Where the class names of a single-file export go: ``model.tflite`` -> ``model.labels.txt``."""
    return os.path.splitext(output)[0] + ".labels.txt"


def write_labels(path: str, class_names: Sequence[str]) -> None:
    """One class name per line, line i = class id i (the TFLite / TF Serving convention)."""
    for name in class_names:
        if "\n" in name:
            raise ExportError(f"class name {name!r} contains a newline; rename the class")
    with open(path, "w", encoding="utf-8") as f:
        f.write("".join(f"{n}\n" for n in class_names))


def read_labels(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()
