"""Hyper-parameter search: ``python -m jaxvision.sweep --config FILE --workdir DIR --trials N
--space 'key=loguniform(1e-4,1e-1)' [--space ...] [--config.key=value ...]``.

Each trial trains one run of the recipe (``--config.key=value`` overrides exactly as
``python -m jaxvision.train`` takes them, plus the sampled values) in ``DIR/trials/<k>``. The
Optuna study is stored in ``DIR/study.db`` (or ``--storage URL``): start the same command on
several processes or hosts to run several trials at once; rerun it to continue the study. Writes
``DIR/results.csv``, ``DIR/results.md`` and plots; prints the table (or, with ``--json``, one JSON
document) on stdout, progress on stderr. Inspect a study live with
``optuna-dashboard sqlite:///DIR/study.db``.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from absl import flags

from jaxvision.sweep import space as space_lib
from jaxvision.sweep import study as study_lib

_CONFIG = flags.DEFINE_string(
    "config", None, "Recipe file, e.g. configs/mnist5k_lenet.py (optionally ':arg'); any key is "
    "fixed for every trial with --config.key=value, as jaxvision.train takes it.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep directory: study.db, results, trials/<k>/.")
_STUDY = flags.DEFINE_string("study", None, "Study name (default: the recipe file's name).")
_TRIALS = flags.DEFINE_integer("trials", None, "Finished (completed or pruned) trials the study "
                               "should hold; shared by all workers.", lower_bound=1)
_SPACE = flags.DEFINE_multi_string(
    "space", [], "Searched key (repeatable): KEY=loguniform(low,high) | uniform(low,high) | "
    "int(low,high) | choice(v1,v2,...), e.g. 'schedule.base_lr=loguniform(1e-4,1e-1)'.")
_SAMPLER = flags.DEFINE_enum("sampler", "tpe", study_lib.SAMPLERS,
                             "Optuna sampler; grid takes choice/int spaces only.")
_SEED = flags.DEFINE_integer("seed", None, "Sampler seed (default: random). Several workers "
                             "with one seed propose the same points; give each its own.")
_PRUNER = flags.DEFINE_enum("pruner", "median", study_lib.PRUNERS,
                            "Stop poor trials at an evaluation: median (MedianPruner), asha "
                            "(SuccessiveHalvingPruner) or none.")
_PRUNER_STARTUP = flags.DEFINE_integer("pruner_startup_trials", 5, "median: finished trials "
                                       "before any trial is pruned (Optuna's default).",
                                       lower_bound=0)
_PRUNER_WARMUP = flags.DEFINE_integer("pruner_warmup_steps", 0, "median: training steps before "
                                      "a trial can be pruned; asha: minimum resource in steps "
                                      "(0 = Optuna's estimate).", lower_bound=0)
_METRIC = flags.DEFINE_string("metric", "top1", "Validation metric to optimize: top1, top5, "
                              "nll, ece or brier (the last evaluation of each run).")
_DIRECTION = flags.DEFINE_enum("direction", None, study_lib.DIRECTIONS,
                               "Default: the metric's own (maximize top1/top5, minimize the rest).")
_STORAGE = flags.DEFINE_string("storage", None, "SQLAlchemy URL of the study's database "
                               "(default sqlite:///DIR/study.db), e.g. postgresql://u@host/db.")
_HEARTBEAT = flags.DEFINE_integer("heartbeat_interval", 60, "Seconds between a running trial's "
                                  "heartbeats; a trial silent for two intervals belongs to a dead "
                                  "worker and is resumed by another.", lower_bound=1)
_MAX_RETRIES = flags.DEFINE_integer("max_retries", 3, "How often an interrupted trial is "
                                    "resumed.", lower_bound=0)
_JSON = flags.DEFINE_bool("json", False, "Print one JSON document (best trial, counts, files).")


def _fail(message: str, status: int = 2) -> None:
    from jaxvision import cli

    cli.fail(message, status)


def _parse(argv: list[str]) -> list[str]:
    """absl flags, with the ``--config.key=value`` overrides set aside (returned)."""
    overrides = [a for a in argv[1:] if a.startswith("--config.")]
    try:
        rest = flags.FLAGS([a for a in argv if not a.startswith("--config.")])
    except flags.Error as e:
        from jaxvision import cli

        _fail(cli.flag_error_message(e))
    if len(rest) > 1:
        _fail(f"unexpected arguments {rest[1:]}; flags are --name=value and config overrides "
              "--config.key=value.")
    for name, flag in (("config", _CONFIG), ("workdir", _WORKDIR), ("trials", _TRIALS)):
        if flag.value is None:
            _fail(f"--{name} is required (see python -m jaxvision.sweep --help).")
    return overrides


def _interrupt(signum, frame):
    raise KeyboardInterrupt(signum)


def main(overrides: list[str]) -> None:
    from jaxvision import cli
    from jaxvision.sweep import report, worker

    cli.quiet_logging()
    with cli.filtered_stderr():  # TensorFlow's start-up banners (the recipe's data imports it)
        from jaxvision.data import _tf

        _tf.load()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the worker prints its own lines
    signal.signal(signal.SIGTERM, _interrupt)  # a preempted worker stops like a Ctrl-C
    workdir = os.path.abspath(_WORKDIR.value)
    name = _STUDY.value or os.path.splitext(os.path.basename(_CONFIG.value.partition(":")[0]))[0]
    try:
        sweep = study_lib.make_sweep(_CONFIG.value, overrides, _SPACE.value, _METRIC.value,
                                     _DIRECTION.value)
        os.makedirs(workdir, exist_ok=True)
        storage = study_lib.make_storage(_STORAGE.value or study_lib.default_storage(workdir),
                                         heartbeat_interval=_HEARTBEAT.value,
                                         max_retries=_MAX_RETRIES.value)
        study = study_lib.open_study(
            name, storage, sweep, sampler=study_lib.make_sampler(
                _SAMPLER.value, sweep, study_lib.sampler_seed(_SEED.value, storage, name)),
            pruner=study_lib.make_pruner(_PRUNER.value, startup_trials=_PRUNER_STARTUP.value,
                                         warmup_steps=_PRUNER_WARMUP.value))
        run = worker.Worker(sweep, study, workdir, _TRIALS.value, poll_seconds=min(_HEARTBEAT.value, 10),
                            max_retries=_MAX_RETRIES.value,
                            log=lambda line: print(line, file=sys.stderr, flush=True))
        run.run()
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    except worker.trial_lib.TrialError as e:
        _fail(str(e), status=1)
    except KeyboardInterrupt as e:
        signum = e.args[0] if e.args else signal.SIGINT
        print(f"stopped by {signal.Signals(signum).name}; rerun the same command to continue the "
              "study", file=sys.stderr)
        sys.exit(128 + signum)
    files = report.write_tables(study, workdir, sweep.metric)
    files += report.write_plots(study, workdir, sweep.metric)
    summary = {**report.summary(study, sweep.metric), "workdir": workdir, "files": files}
    if _JSON.value:
        print(json.dumps(summary, indent=2))
        return
    with open(os.path.join(workdir, "results.md")) as f:
        print(f.read(), end="")
    best = summary["best"]
    if best:
        params = ", ".join(f"{k}={space_lib.flag_value(v)}" for k, v in best["params"].items())
        print(f"best: trial {best['trial']} val/{sweep.metric}={best[f'val/{sweep.metric}']:.4f} "
              f"({params}) in {best['workdir']}")
    print(f"inspect: optuna-dashboard {_STORAGE.value or study_lib.default_storage(workdir)}",
          file=sys.stderr)


def run() -> None:
    from jaxvision import cli

    cli.quiet_environment(sys.argv)
    cli.run_absl(main, sys.argv, _parse)


if __name__ == "__main__":
    run()
