"""Train a model: ``python -m jaxvision.train --config configs/<file>.py[:arg] --workdir DIR``.

Any config key can be overridden with ``--config.<key>=<value>`` (e.g. ``--config.batch_size=256
--config.optimizer.name=adamw --config.data.path=/my/images``). A workdir that already holds
checkpoints is resumed from its newest good checkpoint. Multi-host: run the same command on every
host with ``--coordinator_address HOST:PORT --num_processes N --process_id I`` (processes that do not
all join within ``--join_timeout_s`` fail with one line naming the missing ones).

Exit status: 0 done; 2 a usage, config, data or workdir problem (one ``error:`` line on stderr);
1 a failure while running (a checkpoint that cannot be written, divergence, processes that do not
join); 128+N stopped by signal N (SIGTERM 143, SIGINT 130) after saving a checkpoint of the step
it finished: rerun the same command to resume.
"""

from __future__ import annotations

import sys

from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Recipe file, e.g. configs/mnist5k_lenet.py (optionally ':arg').", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and config.json.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "Multi-host: HOST:PORT of process 0's coordinator.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")
_JOIN_TIMEOUT = flags.DEFINE_float(
    "join_timeout_s", 120.0, "Multi-host: seconds to wait for every process to join.")
_RESTART = flags.DEFINE_bool(
    "restart_from_scratch", False,
    "Train from step 0 when every checkpoint of --workdir is damaged (they stay moved aside).")


def _fail(message: str, status: int = 2) -> None:
    from jaxvision import cli

    cli.fail(message, status)


def main(argv, overrides=()) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}; options are --config, --workdir, --config.<key>=...")
    if _WORKDIR.value is None:
        _fail("--workdir is required (a directory for checkpoints and logs).")
    from jaxvision import cli

    cli.quiet_logging()
    from jaxvision import compilation_cache
    from jaxvision.training import distributed, rendezvous

    config = _CONFIG.value
    cli.apply_overrides(config, overrides)  # keys whose default is None (see run())
    compilation_cache.enable(config.get("compilation_cache", "auto"))
    try:
        distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                               timeout_s=_JOIN_TIMEOUT.value)
    except ValueError as e:
        _fail(str(e))
    except rendezvous.JoinTimeoutError as e:
        _fail(str(e), status=1)
    import jax

    cli.show_routine_logs(jax.process_index(), jax.process_count())
    result = _train(config, _WORKDIR.value)
    if "stopped" in result and result["stopped"] != "on_evaluate":
        from jaxvision.training import preemption

        print(f"stopped by {result['stopped']} at step {result['step']}; checkpoint saved; rerun "
              "the same command to resume", file=sys.stderr, flush=True)
        sys.exit(preemption.exit_status(result["stopped"]))
    from jaxvision.training import loop

    if loop.is_chief():
        shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}
        print(f"done: {shown}")


def _train(config, workdir: str) -> dict:
    """``loop.train_and_evaluate`` with its known failures as one ``error:`` line each."""
    from jaxvision.training import loop, workdir_lock

    try:
        if config.get("distill"):  # a teacher run: DeiT's hard distillation
            from jaxvision.compression.distillation import train_with_teacher

            return train_with_teacher(config, workdir, restart_from_scratch=_RESTART.value)
        return loop.train_and_evaluate(config, workdir,
                                       restart_from_scratch=_RESTART.value)
    except (ValueError, FileNotFoundError, workdir_lock.WorkdirBusyError) as e:
        _fail(str(e))
    except (loop.CheckpointSaveError, FloatingPointError) as e:
        _fail(str(e), status=1)


def run() -> None:
    from jaxvision import cli

    # JAX is imported by cli.run after the flags are parsed (import_quietly): a mistake in the
    # flags, the recipe or its keys is reported without its start-up time. TensorFlow is imported
    # (quietly) only when a tf.data pipeline is built: a bundled dataset trained from device
    # memory never needs it (3-5 CPU seconds).
    flags.declare_key_flag("help_config")
    flags.declare_key_flag("verbosity")
    if "--help_config" in sys.argv:
        cli.print_config_keys_and_exit(sys.argv)
    config = cli.check_recipe_overrides(sys.argv)
    flags.mark_flags_as_required(["config"])
    # ml_collections cannot parse keys whose default is None (data.mean, init_from, ...):
    # those are applied by main() through cli.apply_overrides instead.
    cli.run(main, config_overrides=lambda key: config is None or not cli.none_valued(config, key),
            tensorflow=False)


if __name__ == "__main__":
    run()
