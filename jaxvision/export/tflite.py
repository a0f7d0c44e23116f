"""TFLite flatbuffers: float32, and full-integer int8 for phones and microcontrollers.

Route: the fixed-size pixels -> logits function (``Servable.pixels_to_logits``: the evaluation
transform as matmuls, then the model) through ``jax2tf.convert`` (native
serialization) and ``tf.lite.TFLiteConverter``, which legalizes the StableHLO into TFLite builtin
ops, then ``tf.nn.softmax``. TFLite has no antialiased resize (``ScaleAndTranslate`` is neither builtin nor Flex), hence
the fixed input size. The float model's batch dimension is dynamic where TFLite can express it
(``Interpreter.resize_tensor_input``), the int8 model's is a static 1 (see ``export_tflite``). Every converted
model is run once by the interpreter (in a child process) before it is returned.

Input: uint8 (N, H, W, 3) RGB at the exported size. Output: float32 probabilities (N, K); for
int8, uint8 probabilities with the output tensor's (scale, zero_point) quantization.
Full-integer quantization follows the TFLite post-training recipe: ``Optimize.DEFAULT``, a
representative dataset of real training images, ``TFLITE_BUILTINS_INT8`` only, uint8 out; the
raw uint8 pixels enter through CAST + QUANTIZE, every later op (matmul resize, convolutions,
dense layers, SOFTMAX) runs in int8.
The class names go to ``<output stem>.labels.txt``.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence

import numpy as np
from jax.experimental import jax2tf

from jaxvision.data._tf import tf
from jaxvision.export.preprocessing import INPUT_CHANNELS
from jaxvision.export.serving import ExportError, Servable, portable_convolutions

log = logging.getLogger(__name__)  # jaxvision.*: shown as 'jaxvision: warning: ...'

# How the converter names an op it cannot express (MLIR diagnostics of TF 2.21's converter).
_UNSUPPORTED = (
    re.compile(r"'([\w.]+)' op is (?:not part of the vhlo support|neither a custom op nor a flex)"),
    re.compile(r"failed to legalize operation '([\w.]+)'"),
    re.compile(r"(?:Custom|Flex) ops: ([\w.]+(?:, [\w.]+)*)"),
)


def export_tflite(servable: Servable, input_hw: Sequence[int],
                  calibration: np.ndarray | None = None) -> bytes:
    """The .tflite flatbuffer: float32, or full-integer int8 when ``calibration`` (uint8
    (M, H, W, 3) training images, a few hundred) is given. Raises ExportError naming the ops
    that TFLite cannot express.

    Float models get a dynamic batch when TFLite can express the model that way, else (e.g. a
    gather whose shape depends on the batch: ``vhlo.dynamic_gather``) a static batch of 1.
    int8 models always have a static batch of 1: the converter then folds BatchNorm into the
    convolutions and drops the shape arithmetic of a symbolic batch.
    """
    batches = (None, 1) if calibration is None else (1,)
    for batch in batches:
        try:
            flatbuffer = _convert(servable, input_hw, calibration, batch)
            break
        except ExportError as e:
            if batch == batches[-1]:
                raise
            log.warning("%s; exporting with a static batch of 1 instead", e)
    _check_runs(servable, flatbuffer)
    return flatbuffer


def _convert(servable, input_hw, calibration, batch) -> bytes:
    module = tf.Module()  # the trackable owner of the function (the non-deprecated path)
    module.serve = _serving_function(servable, input_hw, batch)
    with portable_convolutions():  # jax2tf traces the model here, when TF traces the function
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [module.serve.get_concrete_function()], module)
    if calibration is not None:
        _set_full_integer(converter, calibration)
    try:
        return converter.convert()
    except Exception as e:  # noqa: BLE001 - the converter raises several types; all unsupported
        raise ExportError(_unsupported_message(servable, str(e))) from None


def _serving_function(servable: Servable, input_hw: Sequence[int], batch: int | None):
    h, w = (int(v) for v in input_hw)
    f = servable.pixels_to_logits((h, w))
    variables = servable.variables
    converted = jax2tf.convert(lambda x: f(variables, x),
                               polymorphic_shapes=[f"({batch or 'b'}, {h}, {w}, {INPUT_CHANNELS})"],
                               with_gradient=False)
    spec = tf.TensorSpec([batch, h, w, INPUT_CHANNELS], tf.uint8, name="images")
    # Softmax on the TF side becomes TFLite's SOFTMAX builtin (exact int8 kernel with a
    # fixed 1/256 output scale); JAX's decomposed exp / sum / divide quantizes badly.
    return tf.function(lambda x: tf.nn.softmax(converted(x), axis=-1),
                       input_signature=[spec], autograph=False)


def _set_full_integer(converter, calibration: np.ndarray) -> None:
    if calibration.dtype != np.uint8 or calibration.ndim != 4 or len(calibration) == 0:
        raise ExportError("int8 calibration needs uint8 images (M, H, W, 3) with M >= 1")

    def representative_dataset():
        for image in calibration:
            yield [image[None]]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    # The graph's input is already uint8 pixels (CAST + QUANTIZE inside), so only the output
    # type is set; inference_input_type would expect a float input to re-type.
    converter.inference_output_type = tf.uint8


def _unsupported_message(servable: Servable, message: str) -> str:
    ops = sorted({op for pattern in _UNSUPPORTED for found in pattern.findall(message)
                  for op in found.split(", ")})
    if ops:
        what = f"op(s) {', '.join(ops)}"
    else:  # an unforeseen failure: its first diagnostic line
        lines = [line for line in message.splitlines() if "error" in line.lower()] or [message]
        what = f"the model ({lines[0].strip()[-300:]})"
    return (f"TFLite cannot express {what} of model {servable.model_name!r}; export it with "
            "--format=saved_model or --format=stablehlo instead")


# Loads a .tflite file and runs it once on zeros, in a child process: some converted int8 models
# abort the interpreter (SIGABRT) instead of raising, which must not kill the exporting process.
_SMOKE_TEST = """
import sys, numpy as np

try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:
    import tensorflow as tf
    Interpreter = tf.lite.Interpreter
interpreter = Interpreter(model_path=sys.argv[1])
interpreter.allocate_tensors()
spec = interpreter.get_input_details()[0]
interpreter.set_tensor(spec["index"], np.zeros(spec["shape"], spec["dtype"]))
interpreter.invoke()
"""


def _check_runs(servable: Servable, flatbuffer: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.tflite")
        with open(path, "wb") as f:
            f.write(flatbuffer)
        proc = subprocess.run([sys.executable, "-c", _SMOKE_TEST, path], capture_output=True,
                              text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines()
                 if line.strip() and not line.startswith(("INFO:", "WARNING:"))]
        why = (f"it aborted with signal {-proc.returncode}" if proc.returncode < 0
               else f"exit status {proc.returncode}")
        if lines:
            why += f": {lines[-1][-300:]}"
        raise ExportError(
            f"the TFLite interpreter cannot run the converted {servable.model_name!r} model "
            f"({why}); export it with --format=tflite (float), saved_model or stablehlo instead")


class TFLiteRunner:
    """Runs a .tflite file with the LiteRT interpreter (``ai-edge-litert``; TensorFlow's
    ``tf.lite.Interpreter`` when that is not installed).

    ``runner(uint8 (N, H, W, 3)) -> float32 (N, K)`` probabilities (dequantized for int8).
    """

    def __init__(self, path: str, num_threads: int | None = None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # the TF copy of the same interpreter
            Interpreter = tf.lite.Interpreter  # noqa: N806
        self.interpreter = Interpreter(model_path=path, num_threads=num_threads)
        self._input = self.interpreter.get_input_details()[0]
        self._output_index = self.interpreter.get_output_details()[0]["index"]
        self._batch = None
        # A static batch (int8 models) is run in chunks of that size.
        fixed = int(self._input["shape_signature"][0])
        self.fixed_batch = fixed if fixed > 0 else None

    @property
    def input_hw(self) -> tuple[int, int]:
        return tuple(int(v) for v in self._input["shape_signature"][1:3])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, np.uint8)
        if images.shape[1:3] != self.input_hw:
            raise ValueError(f"this model takes {self.input_hw[0]}x{self.input_hw[1]} images, "
                             f"got {images.shape[1]}x{images.shape[2]}")
        if self.fixed_batch and len(images) != self.fixed_batch:
            step = self.fixed_batch
            return np.concatenate([self(images[i:i + step]) for i in range(0, len(images), step)])
        if self._batch != len(images):
            self.interpreter.resize_tensor_input(self._input["index"], list(images.shape))
            self.interpreter.allocate_tensors()
            self._batch = len(images)
        self.interpreter.set_tensor(self._input["index"], images)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self._output_index)
        detail = self.interpreter.get_output_details()[0]
        scale, zero = detail["quantization"]
        if scale:
            return (out.astype(np.float32) - zero) * scale
        return out.astype(np.float32)
