"""SIGTERM / SIGINT: the step in flight finishes, is checkpointed, and the rerun ends bit-identical
to an uninterrupted run; a second SIGINT aborts; a second run on a busy workdir is refused."""

import collections
import json
import os
import signal
import socket

import pytest

from tests.reliability import harness

pytestmark = pytest.mark.slow

def _assert_each_step_once(workdir: str) -> None:
    """metrics.jsonl and the TensorBoard events hold each (step, metric) once."""
    rows = [json.loads(x) for x in open(os.path.join(workdir, "metrics.jsonl"))]
    counts = collections.Counter((r["step"], k) for r in rows for k in r if k != "step")
    assert max(counts.values()) == 1
    assert sorted({r["step"] for r in rows if "train/loss" in r}) == list(range(1, harness.TOTAL + 1))
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(os.path.join(workdir, "tensorboard"),
                                             size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    steps = [e.step for e in acc.Tensors("train/loss")]
    assert sorted(steps) == list(range(1, harness.TOTAL + 1))


def test_sigterm_saves_the_step_in_flight_and_resumes_bit_identical(tmp_path, reference_run):
    wd = str(tmp_path / "run")
    proc = harness.start(wd)
    harness.wait_for_step(proc, wd, 5)  # before the first periodic checkpoint (10)
    # While it is paused (holding its lock), a second run on the workdir is refused, naming it.
    proc.send_signal(signal.SIGSTOP)
    seen = max(harness.logged_steps(wd))
    busy = harness.run(wd)
    proc.send_signal(signal.SIGTERM)  # delivered on SIGCONT
    proc.send_signal(signal.SIGCONT)
    line = harness.assert_one_error(busy)
    assert f"pid {proc.pid}" in line and socket.gethostname() in line, line
    rc, _, err = harness.finish(proc)
    assert rc == 128 + signal.SIGTERM, err[-3000:]
    assert "Traceback" not in err
    step = harness.stopped_step(err, "SIGTERM")
    # Stopped after the step in flight when the signal came: nothing lost, nothing run after.
    assert step in (seen, seen + 1) and harness.checkpoint_steps(wd) == [step]
    assert max(harness.logged_steps(wd)) == step

    resumed = harness.run(wd)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert harness.bit_identical(wd, reference_run)


def test_sigint_after_a_checkpoint_resumes_bit_identical_and_logs_once(tmp_path,
                                                                         reference_run):
    wd = str(tmp_path / "run")
    proc = harness.start(wd)
    seen = harness.signal_at(proc, wd, 15, signal.SIGINT)
    rc, _, err = harness.finish(proc)
    assert rc == 128 + signal.SIGINT and "Traceback" not in err, err[-3000:]
    step = harness.stopped_step(err, "SIGINT")
    assert step >= seen and harness.checkpoint_steps(wd) == [10, step]
    resumed = harness.run(wd)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert harness.bit_identical(wd, reference_run)
    _assert_each_step_once(wd)


def test_second_sigint_aborts_at_once(tmp_path):
    wd = str(tmp_path / "run")
    proc = harness.start(wd)
    harness.wait_for_step(proc, wd, 3)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    rc, _, err = harness.finish(proc)
    assert rc == 128 + signal.SIGINT, err[-3000:]
    assert "Traceback" not in err
    assert "aborted by a second SIGINT" in err or "stopped by SIGINT" in err
