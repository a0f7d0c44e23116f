"""jaxvision.export: a trained run as a TF SavedModel, TFLite (float / int8) or StableHLO file.

    run = jaxvision.training.checkpoints.load_run(workdir)
    export_run(run, "saved_model", "serving/lenet5/1")

Every format holds the evaluation transform and a softmax: uint8 RGB in, probabilities out.

Route (established on jax 0.10.2 / tensorflow-cpu 2.21): ``jax.experimental.jax2tf`` still ships
and its default, native serialization, embeds ``jax.export``'s StableHLO in one TF
``XlaCallModule`` op, so TensorFlow runs exactly the computation JAX exported; its graph-op mode
(``native_serialization=False``) is deprecated. That is the route to TF (``saved_model``) and,
through ``tf.lite.TFLiteConverter`` (which legalizes that StableHLO into TFLite builtins), to
TFLite. orbax-export wraps the same jax2tf call, and a pure-TF re-implementation would duplicate
every model, so neither is used. ``stablehlo`` is ``jax.export`` itself. TFLite files are run
with the LiteRT interpreter (``ai-edge-litert``, the ``export`` extra) or TF's ``tf.lite``.
"""

from jaxvision.export.calibration import int8_accuracy, jaxvision_probabilities, split_pixels
from jaxvision.export.preprocessing import FixedSizeTransform, fixed_size_transform
from jaxvision.export.runs import (
    CALIBRATION_IMAGES,
    export_run,
    format_summary,
    load_exported,
    parse_input_size,
)
from jaxvision.export.saved_model import export_saved_model, load_saved_model
from jaxvision.export.serving import FORMATS, ExportError, Servable, labels_path, read_labels
from jaxvision.export.stablehlo import export_stablehlo, load_stablehlo
from jaxvision.export.tflite import TFLiteRunner, export_tflite

__all__ = [
    "CALIBRATION_IMAGES",
    "FORMATS",
    "ExportError",
    "FixedSizeTransform",
    "Servable",
    "TFLiteRunner",
    "export_run",
    "export_saved_model",
    "export_stablehlo",
    "export_tflite",
    "fixed_size_transform",
    "format_summary",
    "int8_accuracy",
    "jaxvision_probabilities",
    "labels_path",
    "load_exported",
    "load_saved_model",
    "load_stablehlo",
    "parse_input_size",
    "read_labels",
    "split_pixels",
]
