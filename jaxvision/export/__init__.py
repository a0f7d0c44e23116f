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

# Lazy (PEP 562): ``python -m jaxvision.export`` runs this file before its __main__ parses flags,
# and the submodules import TensorFlow, whose start-up banners must wait for cli.import_quietly.
_SOURCES = {
    "CALIBRATION_IMAGES": "runs",
    "ExportError": "serving",
    "FORMATS": "serving",
    "FixedSizeTransform": "preprocessing",
    "Servable": "serving",
    "TFLiteRunner": "tflite",
    "export_run": "runs",
    "export_saved_model": "saved_model",
    "export_stablehlo": "stablehlo",
    "export_tflite": "tflite",
    "fixed_size_transform": "preprocessing",
    "format_summary": "runs",
    "int8_accuracy": "calibration",
    "jaxvision_probabilities": "calibration",
    "labels_path": "serving",
    "load_exported": "runs",
    "load_saved_model": "saved_model",
    "load_stablehlo": "stablehlo",
    "parse_input_size": "runs",
    "read_labels": "serving",
    "split_pixels": "calibration",
}


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module 'jaxvision.export' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"jaxvision.export.{_SOURCES[name]}"), name)


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
