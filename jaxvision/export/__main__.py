r"""Export a trained run for serving.

    python -m jaxvision.export --workdir runs/lenet5 [--checkpoint latest|best|STEP] \
        --format saved_model|tflite|tflite_int8|stablehlo --output PATH \
        [--input_size 28 | 28x28] [--calibration_images 300] [--eval_split test] [--json]

Prints what was written (and for tflite_int8 the accuracy of the float and the int8 model on the
test split); with ``--json`` stdout holds exactly one JSON object. Bad input: one
``error: ...`` line on stderr, exit status 2. Logic: ``jaxvision.export.export_run``.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory written by jaxvision.train.")
flags.DEFINE_string("checkpoint", "latest", "'latest', 'best' or a step number.")
flags.DEFINE_string("format", None, "saved_model, tflite, tflite_int8 or stablehlo.")
flags.DEFINE_string("output", None, "SavedModel directory, or the .tflite / .stablehlo file.")
flags.DEFINE_string("input_size", None, "Fixed input size for tflite/stablehlo: S or HxW pixels "
                    "(default: the dataset's image size).")
flags.DEFINE_integer("calibration_images", 300, "Training images that calibrate int8.")
flags.DEFINE_string("eval_split", "test", "Split on which tflite_int8's accuracy is measured.")
flags.DEFINE_integer("eval_images", 0, "At most this many images of --eval_split (0: all).")
flags.DEFINE_bool("overwrite", False, "Replace a previous export at --output (a SavedModel "
                  "folder, or a file) once the new one is complete; other folders are refused.")
flags.DEFINE_bool("json", False, "Print one JSON object instead of text lines.")


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}; every option is a --flag=value")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from jaxvision import cli, evaluation, export
    from jaxvision.data import DataError

    cli.quiet_logging()
    for name in ("workdir", "format", "output"):
        if not FLAGS[name].value:
            _fail(f"--{name} is required (see --help)")
    if FLAGS.format not in export.FORMATS:
        _fail(f"--format={FLAGS.format!r} is not one of {', '.join(export.FORMATS)}")
    if FLAGS.calibration_images < 1 or FLAGS.eval_images < 0:
        _fail("--calibration_images must be >= 1 and --eval_images >= 0")
    try:
        evaluation.parse_checkpoint(FLAGS.checkpoint)
        input_hw = export.parse_input_size(FLAGS.input_size) if FLAGS.input_size else None
    except ValueError as e:
        _fail(str(e))
    run = cli.open_run(FLAGS.workdir, FLAGS.checkpoint)
    try:
        summary = export.export_run(
            run, FLAGS.format, FLAGS.output, input_hw=input_hw,
            calibration_images=FLAGS.calibration_images, eval_split=FLAGS.eval_split,
            eval_images=FLAGS.eval_images or None, overwrite=FLAGS.overwrite)
    except (export.ExportError, DataError, ValueError) as e:
        _fail(str(e))
    print(json.dumps(summary) if FLAGS.json else export.format_summary(summary))
    return 0


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    app.run(main)
