"""One trial = one training run in its own process, talking to the worker over a pipe.

The trial trains with ``jaxvision.training.loop.train_and_evaluate`` — the loop of
``python -m jaxvision.train`` — on the recipe plus ``--config.key=value`` flags, in a fresh
interpreter started with multiprocessing's *spawn* method. Why a process of its own:

- a crash, an out-of-memory kill or a leak (device memory, XLA caches, threads) ends that trial
  only; the worker records it as failed and goes on;
- the worker never initialises JAX, so on a GPU host it holds no device memory;
- the pipe carries each evaluation to the worker and the pruner's answer back *before* training
  continues, so a pruned run stops at that step through the loop's ``on_evaluate`` hook and keeps
  the checkpoint of that step.

The trial's stdout and stderr go to ``<trial dir>/train.log``. If the worker dies, the trial
process notices (its parent's sentinel) and stops with SIGTERM, so no orphan keeps writing into a
directory a retry will train in.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Sequence

LOG_FILE = "train.log"
_ERRORS = (ValueError, FileNotFoundError, FloatingPointError)


class TrialError(RuntimeError):
    """The training run of a trial failed (its message ends with where the log is)."""


def command_line(config: str, workdir: str, overrides: Sequence[str]) -> str:
    """The ``python -m jaxvision.train`` command that trains the same run."""
    args = ["python", "-m", "jaxvision.train", f"--config={config}", f"--workdir={workdir}",
            *overrides]
    return " ".join(shlex.quote(a) for a in args)


def run(config: str, overrides: Sequence[str], workdir: str,
        on_evaluate: Callable[[int, dict], bool]) -> dict:
    """Train one run in a child process; returns ``train_and_evaluate``'s result dict.

    ``on_evaluate(step, val_metrics) -> stop`` is called in this process after every evaluation
    of the child. Raises TrialError when the run fails; on KeyboardInterrupt the child is stopped
    with SIGTERM (the loop saves what it can) before the interrupt goes on.
    """
    os.makedirs(workdir, exist_ok=True)
    log_path = os.path.join(workdir, LOG_FILE)
    with open(log_path, "a") as log:
        log.write(f"$ {command_line(config, workdir, overrides)}\n")
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=_child_main, args=(config, list(overrides), workdir, theirs,
                                                  log_path), name="jaxvision-trial")
    child.start()
    theirs.close()
    with open(log_path, "a") as log:
        log.write(f"# trial process {child.pid}, worker process {os.getpid()}\n")
    outcome: dict = {}
    try:
        _relay(ours, on_evaluate, outcome)
        child.join()
    except BaseException:
        _stop(child)
        raise
    finally:
        ours.close()
    if "result" in outcome and child.exitcode == 0:
        return outcome["result"]
    reason = outcome.get("error") or f"the training process exited with status {child.exitcode}"
    raise TrialError(f"{reason} (log: {log_path})")


def _relay(conn, on_evaluate, outcome: dict) -> None:
    """Answer the child's evaluations until it closes the pipe; keep its result or error."""
    while True:
        try:
            kind, *payload = conn.recv()
        except EOFError:
            return
        if kind == "evaluation":
            conn.send(bool(on_evaluate(*payload)))
        else:
            outcome[kind] = payload[0]


def _stop(child, timeout: float = 120.0) -> None:
    """SIGTERM (the loop can save a checkpoint), then SIGKILL if it does not end in time."""
    if child.is_alive():
        child.terminate()
        child.join(timeout)
    if child.is_alive():
        child.kill()
        child.join()


# ---- in the child process ------------------------------------------------------------------
def _child_main(config: str, overrides: list[str], workdir: str, conn, log_path: str) -> None:
    _redirect_output(log_path)
    _stop_with_parent()
    from jaxvision import cli
    from jaxvision import config as config_lib

    cli.quiet_logging()
    from jaxvision.training import loop

    def on_evaluate(step: int, metrics: dict) -> bool:
        conn.send(("evaluation", int(step), dict(metrics)))
        return conn.recv()

    try:
        cfg = config_lib.from_flags(config, overrides)
        result = loop.train_and_evaluate(cfg, workdir, on_evaluate=on_evaluate)
    except _ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        conn.send(("error", f"{type(e).__name__}: {e}"))
        sys.exit(1)
    conn.send(("result", result))


def _redirect_output(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for stream in (1, 2):
        os.dup2(fd, stream)
    os.close(fd)


def _stop_with_parent() -> None:
    """A thread that sends this process SIGTERM when the worker that started it is gone."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch():
        multiprocessing.connection.wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="stop-with-worker", daemon=True).start()
