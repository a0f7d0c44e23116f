r"""Compress a run directory from the command line; writes a run directory and a report.

    python -m jaxvision.compression prune --workdir RUN --sparsity 0.8 [--steps 500] [--output OUT]
    python -m jaxvision.compression quantize --workdir RUN [--output OUT]
    python -m jaxvision.compression distill --workdir TEACHER_RUN --config configs/<student>.py \
        [--config.key=value ...] [--steps 1000] [--output OUT] [--temperature 4 --alpha 0.9]
        [--kind hard]   # DeiT: the teacher's argmax, to the distillation head of deit_*_distilled

Shared flags: ``--checkpoint latest|best|STEP`` (default ``latest``, as evaluate/predict/explain:
the model you evaluate is the one you compress), ``--batch_size``, ``--split``, ``--output``
(default ``RUN/<command>``), ``--json``. Every output is a run directory that evaluate, predict,
explain and ``init_from`` read: ``prune``/``distill`` hold the new weights; ``quantize`` holds
the int8-rounded weights (dequantized to float32, so any reader computes the int8-weight model)
and ``quantized.msgpack`` with the int8 kernels + per-channel scales themselves. The report
(before/after top-1, sizes, sparsity) is printed and written to ``OUT/compression.json``.
"""

from __future__ import annotations

import difflib
import json
import os

from absl import flags

from jaxvision import cli

COMMANDS = ("prune", "quantize", "distill")
FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory to compress (the teacher for distill).")
flags.DEFINE_string("checkpoint", "latest", "Which checkpoint: 'latest', 'best' or a step number.")
flags.DEFINE_string("output", None, "New run directory (default: WORKDIR/<command>).")
flags.DEFINE_integer("batch_size", 128, "Global batch for fine-tuning and evaluation.",
                     lower_bound=1)
flags.DEFINE_string("split", None, "Evaluation split of the report (default: the run's "
                    "config.data.eval_split).")
flags.DEFINE_bool("json", False, "Print the report as one JSON object on stdout (logs on stderr).")
flags.DEFINE_float("sparsity", None, "prune: target fraction of zero weights in [0, 1), e.g. 0.8.")
flags.DEFINE_integer("steps", None, "prune/distill: training steps (default 500 for prune, 1000 "
                     "for distill).", lower_bound=1)
flags.DEFINE_float("learning_rate", 1e-3, "prune/distill: Adam learning rate.")
flags.DEFINE_integer("update_every", 10, "prune: steps between mask updates.", lower_bound=1)
flags.DEFINE_integer("calibration_batches", 4, "quantize: training batches that calibrate the "
                     "int8 activation ranges.", lower_bound=1)
flags.DEFINE_string("config", None, "distill: the student's recipe file, e.g. "
                    "configs/mnist5k_lenet.py (its keys can be set with --config.key=value).")
flags.DEFINE_float("temperature", 4.0, "distill: softmax temperature of the soft labels "
                   "(Hinton et al. 2015).")
flags.DEFINE_float("alpha", None, "distill: weight of the teacher's term (1 - alpha on the labels); "
                   "default 0.9 for --kind=soft, 0.5 (DeiT) for --kind=hard.", lower_bound=0.0,
                   upper_bound=1.0)
flags.DEFINE_enum("kind", "soft", ["soft", "hard"], "distill: 'soft' (Hinton et al. 2015: KL to the "
                  "teacher's softened outputs) or 'hard' (DeiT: CE to the teacher's argmax, on the "
                  "distillation head of a student that has one).")
_DEFAULT_ALPHA = {"soft": 0.9, "hard": 0.5}
flags.declare_key_flag("help_config")
flags.declare_key_flag("verbosity")

_DEFAULT_STEPS = {"prune": 500, "distill": 1000}


def _command(argv) -> str:
    if len(argv) == 2 and argv[1] not in COMMANDS:
        close = difflib.get_close_matches(argv[1], COMMANDS, n=1, cutoff=0.6)
        tip = f"; did you mean {close[0]}?" if close else ""
        raise cli.UsageError(f"unknown command {argv[1]!r}{tip} Commands: {' | '.join(COMMANDS)}, "
                             "e.g. python -m jaxvision.compression quantize --workdir RUN")
    if len(argv) != 2:
        raise cli.UsageError(f"give one command, {' | '.join(COMMANDS)}, e.g. python -m "
                             "jaxvision.compression quantize --workdir RUN")
    if FLAGS.workdir is None:
        raise cli.UsageError("--workdir is required (the run directory to compress)")
    if argv[1] == "prune" and (FLAGS.sparsity is None or not 0 <= FLAGS.sparsity < 1):
        raise cli.UsageError("prune needs --sparsity in [0, 1), e.g. --sparsity 0.8")
    if argv[1] == "distill" and FLAGS.config is None:
        raise cli.UsageError("distill needs the student recipe: --config configs/<student>.py")
    return argv[1]


def main(argv, overrides):
    if FLAGS.help_config:
        if FLAGS.config is None:
            raise cli.UsageError("--help_config lists distill's student recipe keys: give "
                                 "--config configs/<student>.py")
        cli.print_config_keys_and_exit(["--config", FLAGS.config])
    command = _command(argv)
    if overrides and command != "distill":
        raise cli.UsageError("--config.key=value applies to distill's student recipe only")
    from jaxvision.compression import commands

    out = FLAGS.output or os.path.join(FLAGS.workdir, command)
    with cli.json_stdout(FLAGS.json) as emit:
        run = cli.open_run(FLAGS.workdir, FLAGS.checkpoint)
        options = {"batch_size": FLAGS.batch_size, "split": FLAGS.split}
        try:
            if command == "prune":
                report = commands.prune_run(
                    run, out, sparsity=FLAGS.sparsity, steps=FLAGS.steps or _DEFAULT_STEPS[command],
                    learning_rate=FLAGS.learning_rate, update_every=FLAGS.update_every, **options)
            elif command == "quantize":
                report = commands.quantize_to_run(
                    run, out, calibration_batches=FLAGS.calibration_batches, **options)
            else:
                student = cli.load_recipe(FLAGS.config)
                cli.apply_overrides(student, overrides)
                report = commands.distill_run(
                    run, student, out, steps=FLAGS.steps or _DEFAULT_STEPS[command],
                    learning_rate=FLAGS.learning_rate, temperature=FLAGS.temperature,
                    alpha=_DEFAULT_ALPHA[FLAGS.kind] if FLAGS.alpha is None else FLAGS.alpha,
                    kind=FLAGS.kind, **options)
        except (ValueError, FileExistsError) as e:
            cli.fail(str(e))
        report["workdir"] = os.path.abspath(out)
        if FLAGS.json:
            emit(json.loads(json.dumps(report, default=float)))
    if not FLAGS.json:
        print(json.dumps(report, indent=2, default=float))
    return 0


if __name__ == "__main__":
    cli.run(main, config_overrides=True)
