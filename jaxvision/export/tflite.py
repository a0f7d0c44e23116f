"""TFLite flatbuffers: float32, and full-integer int8 for phones and microcontrollers.

Route: the fixed-size pixels -> logits function (``Servable.pixels_to_logits``: the evaluation
transform as matmuls, then the model) through ``jax2tf.convert`` (native
serialization) and ``tf.lite.TFLiteConverter``, which legalizes the StableHLO into TFLite builtin
ops, then ``tf.nn.softmax``. TFLite has no antialiased resize (``ScaleAndTranslate`` is neither builtin nor Flex), hence
the fixed input size. The batch dimension stays dynamic (``Interpreter.resize_tensor_input``).

Input: uint8 (N, H, W, 3) RGB at the exported size. Output: float32 probabilities (N, K); for
int8, uint8 probabilities with the output tensor's (scale, zero_point) quantization.
Full-integer quantization follows the TFLite post-training recipe: ``Optimize.DEFAULT``, a
representative dataset of real training images, ``TFLITE_BUILTINS_INT8`` only, uint8 out; the
raw uint8 pixels enter through CAST + QUANTIZE, every later op (matmul resize, convolutions,
dense layers, SOFTMAX) runs in int8.
The class names go to ``<output stem>.labels.txt``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from jax.experimental import jax2tf

from jaxvision.data._tf import tf
from jaxvision.export.preprocessing import INPUT_CHANNELS
from jaxvision.export.serving import ExportError, Servable, portable_convolutions

# Op names in converter messages: 'stablehlo.foo', "tf.Foo", 'tfl.foo', 'mhlo.foo', 'chlo.foo'.
_OP_NAME = re.compile(r"['\"]?\b((?:stablehlo|mhlo|chlo|tf|tfl|vhlo)\.[A-Za-z_][\w.]*)['\"]?")
_NOT_OPS = {"tf.function", "tf.lite", "tf.data"}


def export_tflite(servable: Servable, input_hw: Sequence[int],
                  calibration: np.ndarray | None = None) -> bytes:
    """The .tflite flatbuffer: float32, or full-integer int8 when ``calibration`` (uint8
    (M, H, W, 3) training images, a few hundred) is given. Raises ExportError naming the ops
    that TFLite cannot express."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [_concrete_function(servable, input_hw)])
    if calibration is not None:
        _set_full_integer(converter, calibration)
    try:
        return converter.convert()
    except Exception as e:  # noqa: BLE001 - the converter raises several types; all unsupported
        raise ExportError(_unsupported_message(servable, str(e))) from None


def _concrete_function(servable: Servable, input_hw: Sequence[int]):
    h, w = (int(v) for v in input_hw)
    f = servable.pixels_to_logits((h, w))
    variables = servable.variables
    with portable_convolutions():
        converted = jax2tf.convert(lambda x: f(variables, x),
                                   polymorphic_shapes=[f"(b, {h}, {w}, {INPUT_CHANNELS})"],
                                   with_gradient=False)
        spec = tf.TensorSpec([None, h, w, INPUT_CHANNELS], tf.uint8, name="images")
        # Softmax on the TF side becomes TFLite's SOFTMAX builtin (exact int8 kernel with a
        # fixed 1/256 output scale); JAX's decomposed exp / sum / divide quantizes badly.
        return tf.function(lambda x: tf.nn.softmax(converted(x), axis=-1),
                           input_signature=[spec], autograph=False).get_concrete_function()


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
    ops = sorted({m for m in _OP_NAME.findall(message) if m not in _NOT_OPS})
    named = f"op(s) {', '.join(ops)}" if ops else "some ops"
    last = message.strip().splitlines()[-1][:300] if message.strip() else "no details"
    return (f"TFLite cannot express {named} of model {servable.model_name!r} ({last}); export it "
            "with --format=saved_model or --format=stablehlo instead")


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

    @property
    def input_hw(self) -> tuple[int, int]:
        return tuple(int(v) for v in self._input["shape_signature"][1:3])

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, np.uint8)
        if images.shape[1:3] != self.input_hw:
            raise ValueError(f"this model takes {self.input_hw[0]}x{self.input_hw[1]} images, "
                             f"got {images.shape[1]}x{images.shape[2]}")
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
