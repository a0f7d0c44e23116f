"""TensorFlow SavedModel for TF Serving: any image size, any batch size.

Route: ``jax2tf.convert`` with native serialization, i.e. the model is ``jax.export``'s StableHLO
embedded in the graph as one ``XlaCallModule`` op (what JAX maintains; the older graph-op
lowering is deprecated). The result is exact: TF runs the same StableHLO through XLA. The
evaluation transform runs as the pipeline's own TF ops before it (``tf_eval_batch``), so images
of any size are resized and cropped exactly as ``jaxvision.predict`` does. Lowered for CPU, CUDA
and TPU so that one SavedModel serves on each. Parameters are ``tf.Variable``\\ s (no 2 GB graph
constant limit).

Signature ``serving_default``: ``images`` uint8 (N, H, W, 3) RGB -> ``probabilities`` float32
(N, K) and ``classes`` string (N,) (the most probable class name). The class names are also the
asset ``assets/labels.txt`` (line i = class i).
"""

from __future__ import annotations

import os
import tempfile

import jax
import numpy as np
from jax.experimental import jax2tf

from jaxvision.data._tf import tf
from jaxvision.export.preprocessing import INPUT_CHANNELS, tf_eval_batch
from jaxvision.export.serving import Servable, portable_convolutions, write_labels

SERVING_PLATFORMS = ("cpu", "cuda", "tpu")


def export_saved_model(servable: Servable, output: str) -> None:
    """Writes the SavedModel directory ``output`` (see module docstring)."""
    module = _serving_module(servable)
    with tempfile.TemporaryDirectory() as tmp, portable_convolutions():  # traced when saved
        labels = os.path.join(tmp, "labels.txt")
        write_labels(labels, servable.class_names)
        module.labels = tf.saved_model.Asset(labels)
        tf.saved_model.save(module, output, signatures={"serving_default": module.serve})


def _serving_module(servable: Servable) -> tf.Module:
    s, _, c = servable.model_input_shape
    probabilities = jax2tf.convert(
        servable.probabilities, polymorphic_shapes=[None, f"(b, {s}, {s}, {c})"],
        with_gradient=False, native_serialization_platforms=SERVING_PLATFORMS)
    module = tf.Module()
    module.variables_tree = jax.tree.map(lambda v: tf.Variable(np.asarray(v), trainable=False),
                                         servable.variables)
    names = tf.constant(list(servable.class_names))
    r = servable.resolved

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, None, INPUT_CHANNELS], tf.uint8, name="images")],
        autograph=False)
    def serve(images):
        probs = probabilities(module.variables_tree, tf_eval_batch(images, r))
        return {"probabilities": probs, "classes": tf.gather(names, tf.argmax(probs, axis=-1))}

    module.serve = serve
    return module


def load_saved_model(path: str):
    """``f(uint8 (N, H, W, 3) numpy) -> float32 (N, K) numpy`` run by TensorFlow."""
    fn = tf.saved_model.load(path).signatures["serving_default"]

    def run(images: np.ndarray) -> np.ndarray:
        return fn(images=tf.constant(images, tf.uint8))["probabilities"].numpy()

    return run
