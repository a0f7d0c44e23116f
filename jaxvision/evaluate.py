r"""Evaluate a trained run: accuracy, calibration, per-class metrics, plots.

    python -m jaxvision.evaluate --workdir runs/lenet5 [--checkpoint latest|best|STEP] \
        [--split test] [--calibrate [--calibration_split SPLIT]] [--json] [--batch_size N] \
        [--attack none|fgsm|pgd --eps 0.03 --attack_steps 10 --attack_norm linf|l2] \
        [--corruptions gaussian_noise,contrast|all]

Writes ``metrics.json`` and the plots into ``WORKDIR/eval/SPLIT/`` (or ``--out_dir``) and prints a
table, or with ``--json`` one JSON object (the keys of
``jaxvision.evaluation.classification_metrics`` plus split, step, calibration, robustness).
The logic lives in ``jaxvision.evaluation.evaluate_run``.
"""

from __future__ import annotations

import json
import os
import re
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory written by jaxvision.train.", required=True)
flags.DEFINE_string("checkpoint", "latest", "'latest', 'best' or a step number.")
flags.DEFINE_string("split", "test", "Split to evaluate (as given to jaxvision.data.build).")
flags.DEFINE_integer("batch_size", None, "Global evaluation batch (default: the run's "
                     "eval_batch_size, else 256).")
flags.DEFINE_integer("num_bins", 15, "Confidence bins for ECE/MCE.")
flags.DEFINE_bool("calibrate", False, "Fit a temperature on --calibration_split and report the "
                  "split's metrics before and after.")
flags.DEFINE_string("calibration_split", None, "Split the temperature is fitted on (default: "
                    "the run's config.data.eval_split, i.e. its validation split).")
flags.DEFINE_bool("json", False, "Print one JSON object instead of tables.")
flags.DEFINE_bool("plots", True, "Write the PNG plots.")
flags.DEFINE_string("out_dir", None, "Where metrics.json and plots go (default "
                    "WORKDIR/eval/SPLIT).")
flags.DEFINE_enum("attack", "none", ["none", "fgsm", "pgd"], "Adversarial attack to evaluate.")
flags.DEFINE_float("eps", 8 / 255, "Attack radius in pixel units (pixels in [0, 1]).")
flags.DEFINE_integer("attack_steps", 10, "PGD steps.")
flags.DEFINE_enum("attack_norm", "linf", ["linf", "l2"], "Attack norm.")
flags.DEFINE_list("corruptions", None, "Common corruptions to evaluate ('all' for every one).")
flags.DEFINE_list("severities", ["1", "3", "5"], "Corruption severities (1..5).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from jaxvision import cli, compilation_cache, evaluation

    cli.quiet_logging()
    compilation_cache.enable()
    if not os.path.isdir(FLAGS.workdir):
        raise app.UsageError(f"--workdir {FLAGS.workdir!r} is not a directory")
    try:
        robustness = evaluation.robustness_options(
            FLAGS.attack, FLAGS.eps, FLAGS.attack_steps, FLAGS.attack_norm, FLAGS.corruptions,
            FLAGS.severities)
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    run = cli.open_run(FLAGS.workdir, FLAGS.checkpoint)
    # Split strings may hold TFDS slicing ('train[:10%]'): keep the folder name plain.
    out_dir = FLAGS.out_dir or os.path.join(FLAGS.workdir, "eval",
                                            re.sub(r"[^A-Za-z0-9_.-]+", "_", FLAGS.split))
    try:
        result = _evaluate(evaluation, run, out_dir, robustness)
    except ValueError as e:  # bad settings or data: a message, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    result["checkpoint"] = FLAGS.checkpoint
    if FLAGS.json:
        print(json.dumps(evaluation.report.to_jsonable(result)))
    else:
        print(evaluation.report.format_report(result, result.get("class_names")))
    return 0


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
    app.run(main)
