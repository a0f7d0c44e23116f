r"""Export a trained run for serving.

    python -m jaxvision.export --workdir runs/lenet5 [--checkpoint latest|best|STEP] \
        --format saved_model|tflite|tflite_int8|stablehlo --output PATH \
        [--input_size 28 | 28x28] [--calibration_images 300] [--eval_split test] [--json] \
        [--config.data.KEY=VALUE ...]

Prints what was written (and for tflite_int8 the accuracy of the float and the int8 model on the
test split; ``--config.data.*`` overrides say where those images are, e.g.
``--config.data.path=FOLDER`` for a converted run); with ``--json`` stdout holds exactly one JSON
object. Bad input: one ``error: ...`` line on stderr, exit status 2. Works offline on every run
directory (train, convert, compression) except tflite_int8, which reads images of the run's data.
Logic: ``jaxvision.export.export_run``.
"""

from __future__ import annotations

from absl import flags

from jaxvision import cli

FLAGS = flags.FLAGS
cli.define_run_flags(json_help="Print one JSON object on stdout (logs go to stderr).")
flags.DEFINE_string("format", None, "saved_model, tflite, tflite_int8 or stablehlo.")
flags.DEFINE_string("output", None, "SavedModel directory, or the .tflite / .stablehlo file.")
flags.DEFINE_string("input_size", None, "Fixed input size for tflite/stablehlo: S or HxW pixels "
                    "(default: the dataset's image size).")
flags.DEFINE_integer("calibration_images", 300, "Training images that calibrate int8.")
flags.DEFINE_string("eval_split", "test", "Split on which tflite_int8's accuracy is measured.")
flags.DEFINE_integer("eval_images", 0, "At most this many images of --eval_split (0: all).")
flags.DEFINE_bool("overwrite", False, "Replace a previous export at --output (a SavedModel "
                  "folder, or a file) once the new one is complete; other folders are refused.")
flags.declare_key_flag("help_config")


def main(argv, overrides):
    if len(argv) > 1:
        raise cli.UsageError(f"unexpected arguments {argv[1:]}; every option is a --flag=value")
    from jaxvision import evaluation, export
    from jaxvision.data import DataError

    if FLAGS.help_config:
        return cli.print_run_config_keys(FLAGS.workdir, FLAGS.checkpoint)
    for name in ("workdir", "format", "output"):
        if not FLAGS[name].value:
            raise cli.UsageError(f"--{name} is required (see --help)")
    if FLAGS.format not in export.FORMATS:
        raise cli.UsageError(f"--format={FLAGS.format!r} is not one of "
                             f"{', '.join(export.FORMATS)}")
    if FLAGS.calibration_images < 1 or FLAGS.eval_images < 0:
        raise cli.UsageError("--calibration_images must be >= 1 and --eval_images >= 0")
    try:
        evaluation.parse_checkpoint(FLAGS.checkpoint)
        input_hw = export.parse_input_size(FLAGS.input_size) if FLAGS.input_size else None
    except ValueError as e:
        raise cli.UsageError(str(e)) from None
    with cli.json_stdout(FLAGS.json) as emit:
        run = cli.open_run(FLAGS.workdir, FLAGS.checkpoint)
        # --config.data.*: where tflite_int8 finds calibration/test images (e.g. a converted
        # run's --config.data.path=FOLDER), as evaluate takes them.
        cli.apply_data_overrides(run, overrides)
        try:  # filtered: TFLite's converter writes C++ notices (W0000 ... Ignored output_format.)
            with cli.filtered_stderr():
                summary = export.export_run(
                    run, FLAGS.format, FLAGS.output, input_hw=input_hw,
                    calibration_images=FLAGS.calibration_images, eval_split=FLAGS.eval_split,
                    eval_images=FLAGS.eval_images or None, overwrite=FLAGS.overwrite)
        except (export.ExportError, DataError, ValueError) as e:
            cli.fail(str(e))
        if FLAGS.json:
            emit(summary)
    if not FLAGS.json:
        print(export.format_summary(summary))
    return 0


if __name__ == "__main__":
    cli.run(main, config_overrides=True)
