r"""Per-image latency of each exported format's runtime next to ``jaxvision.predict``'s path.

    python -m benchmarks.export_latency --workdir runs/lenet5 [--images 192] [--batch 64]

Exports the run in every format into a temporary folder, then on the same decoded test images
(uint8 RGB, the dataset's size) times: jaxvision (``preprocess_for_eval`` per image + the jitted
model, as ``predict_files`` after decoding, compiled once), TensorFlow on the SavedModel, the LiteRT interpreter
on the float and int8 .tflite, and ``jax.export.deserialize`` on the StableHLO file. Batch 1
(median of all images, after one warm-up call) and batch ``--batch`` (per image). Prints a
Markdown table with file sizes and top-1 on those images. CPU latency depends on the load.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory written by jaxvision.train.", required=True)
flags.DEFINE_integer("images", 192, "Test images to time (a multiple of --batch: one shape).")
flags.DEFINE_integer("batch", 64, "Batch size of the throughput column.")

PATHS = {"saved_model": "model", "tflite": "model.tflite", "tflite_int8": "model_int8.tflite",
         "stablehlo": "model.stablehlo"}


def per_image_ms(fn, images, batch):
    fn(images[:batch])  # warm-up (compilation, tensor allocation)
    if batch == 1:
        times = []
        for i in range(len(images)):
            t = time.perf_counter()
            fn(images[i:i + 1])
            times.append(time.perf_counter() - t)
        return 1e3 * float(np.median(times))
    t = time.perf_counter()
    for i in range(0, len(images), batch):
        fn(images[i:i + batch])
    return 1e3 * (time.perf_counter() - t) / len(images)


def jaxvision_steady_state(run):
    """``predict_files`` after decoding, with one compiled model (``predict_images`` builds a
    new jitted function per call, i.e. compiles once per ``jaxvision.predict`` invocation)."""
    from jaxvision import data
    from jaxvision.evaluation.evaluator import make_logits_fn

    logits_fn = make_logits_fn(run.model)

    def probabilities(images):
        x = np.stack([data.preprocess_for_eval(run.config.data, im) for im in images])
        logits = np.asarray(logits_fn(run.variables, x), np.float64)
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    return probabilities


def main(argv):
    del argv
    from jaxvision import cli, export
    from jaxvision.training import checkpoints

    cli.quiet_logging()
    run = checkpoints.load_run(FLAGS.workdir)
    hw = export.Servable.from_run(run).default_input_hw()
    images, labels = export.split_pixels(run.config.data, "test", hw, limit=FLAGS.images)
    rows = [("jaxvision (preprocess_for_eval + jitted model)", jaxvision_steady_state(run), "-")]
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, name in PATHS.items():
            path = os.path.join(tmp, name)
            summary = export.export_run(run, fmt, path, eval_images=FLAGS.images)
            rows.append((fmt, export.load_exported(fmt, path), f"{summary['bytes']:,}"))
        print("| runtime | bytes | top-1 | ms/image, batch 1 | ms/image, batch "
              f"{FLAGS.batch} |\n|---|---:|---:|---:|---:|")
        for name, fn, size in rows:
            top1 = np.mean(fn(images).argmax(-1) == labels)
            print(f"| {name} | {size} | {100 * top1:.1f}% | {per_image_ms(fn, images, 1):.3f} | "
                  f"{per_image_ms(fn, images, FLAGS.batch):.4f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
