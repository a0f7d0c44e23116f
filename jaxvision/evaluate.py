r"""Evaluate any run directory: accuracy, calibration, per-class metrics, plots.

    python -m jaxvision.evaluate --workdir RUN [--checkpoint latest|best|STEP] [--split test] \
        [--config.data.KEY=VALUE ...] [--calibrate [--calibration_split SPLIT]] [--json] \
        [--batch_size N] [--output DIR] [--plots] \
        [--attack none|fgsm|pgd --eps 0.03 --attack_steps 10 --attack_norm linf|l2] \
        [--corruptions gaussian_noise,contrast|all]

The data come from the run's config (config.json); ``--config.key=value`` overrides any key of
it, e.g. evaluate on an image folder: ``--config.data.name=image_folder
--config.data.path=/photos`` (``--help_config`` lists the keys). Writes ``metrics.json`` (and,
with ``--plots``, the PNG plots) into ``--output`` (default ``RUN/eval/SPLIT/``) and prints a
table, or with ``--json`` one
JSON object on stdout (the keys of ``jaxvision.evaluation.classification_metrics`` plus split,
step, checkpoint, calibration, robustness; every log line on stderr).
Logic: ``jaxvision.evaluation.evaluate_run``.
"""

from __future__ import annotations

import os
import re

from absl import flags

from jaxvision import cli

FLAGS = flags.FLAGS
cli.define_run_flags(batch_size=None, batch_size_help="Global evaluation batch (default: the "
                     "run's eval_batch_size, else 256).",
                     json_help="Print one JSON object on stdout instead of tables (logs go to "
                     "stderr).")
flags.DEFINE_string("split", "test", "Split to evaluate (as given to jaxvision.data.build; TFDS "
                    "slicing allowed, e.g. 'train[:10%]').")
flags.DEFINE_integer("num_bins", 15, "Confidence bins for ECE/MCE.", lower_bound=1)
flags.DEFINE_bool("calibrate", False, "Fit a temperature on --calibration_split and report the "
                  "split's metrics before and after.")
flags.DEFINE_string("calibration_split", None, "Split the temperature is fitted on (default: "
                    "the run's config.data.eval_split, i.e. its validation split).")
flags.DEFINE_bool("plots", False, "Also draw the PNG plots into --output: reliability diagram, "
                  "confusion matrix, per-class bars (matplotlib: about 1 CPU second more).")
flags.DEFINE_string("output", None, "Folder for metrics.json and plots (default "
                    "WORKDIR/eval/SPLIT).")
flags.DEFINE_enum("attack", "none", ["none", "fgsm", "pgd"], "Adversarial attack to evaluate.")
flags.DEFINE_float("eps", 8 / 255, "Attack radius in pixel units (pixels in [0, 1]).")
flags.DEFINE_integer("attack_steps", 10, "PGD steps.", lower_bound=1)
flags.DEFINE_enum("attack_norm", "linf", ["linf", "l2"], "Attack norm.")
flags.DEFINE_list("corruptions", None, "Common corruptions to evaluate ('all' for every one).")
flags.DEFINE_list("severities", ["1", "3", "5"], "Corruption severities (1..5).")
flags.declare_key_flag("help_config")


def main(argv, overrides):
    if len(argv) > 1:
        raise cli.UsageError(f"unexpected arguments {argv[1:]}; evaluate takes flags only")
    if FLAGS.help_config:
        return cli.print_run_config_keys(FLAGS.workdir, FLAGS.checkpoint)
    if FLAGS.workdir is None:
        raise cli.UsageError("--workdir is required (a run directory)")
    from jaxvision import compilation_cache, evaluation

    compilation_cache.enable()

    try:
        robustness = evaluation.robustness_options(
            FLAGS.attack, FLAGS.eps, FLAGS.attack_steps, FLAGS.attack_norm, FLAGS.corruptions,
            FLAGS.severities)
    except ValueError as e:
        raise cli.UsageError(str(e)) from e
    # Split strings may hold TFDS slicing ('train[:10%]'): keep the folder name plain.
    out_dir = FLAGS.output or os.path.join(FLAGS.workdir, "eval",
                                           re.sub(r"[^A-Za-z0-9_.-]+", "_", FLAGS.split))
    with cli.json_stdout(FLAGS.json) as emit:
        run = cli.open_run(FLAGS.workdir, FLAGS.checkpoint)
        cli.output_folder(out_dir)
        cli.apply_data_overrides(run, overrides)
        _check_data(run.config.data)
        try:
            result = _evaluate(evaluation, run, out_dir, robustness)
        except ValueError as e:  # bad settings or data (DataError too): a message, no traceback
            cli.fail(str(e))
        result["checkpoint"] = FLAGS.checkpoint
        if FLAGS.json:
            emit(evaluation.report.to_jsonable(result))
    if not FLAGS.json:
        print(evaluation.report.format_report(result, result.get("class_names")))
    return 0


def _check_data(data_config) -> None:
    if data_config.name == "image_folder" and not data_config.path:
        raise cli.UsageError(
            "this run records no evaluation data (a converted model?): give an image folder with "
            "--config.data.path=FOLDER (FOLDER/<class>/*.jpg) or a dataset with "
            "--config.data.name=NAME")


def _evaluate(evaluation, run, out_dir, robustness):
    return evaluation.evaluate_run(
        run,
        FLAGS.split,
        batch_size=FLAGS.batch_size,
        num_bins=FLAGS.num_bins,
        calibrate=FLAGS.calibrate,
        calibration_split=FLAGS.calibration_split,
        out_dir=out_dir,
        plots=FLAGS.plots,
        robustness=robustness,
    )


if __name__ == "__main__":
    # TensorFlow only if the data need tf.data (a bundled split is read without it).
    cli.run(main, config_overrides=True, tensorflow=False)
