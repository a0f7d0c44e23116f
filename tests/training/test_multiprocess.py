"""Subprocess runs: kill -9 and resume is exact; 2 processes x 2 devices == 1 process x 4 devices.

Both use tests/training/run_fake.py (tiny BatchNorm CNN, adamw). Sizes: resume = 30 steps of batch
32 on 2 devices, synthetic data, checkpoints every 5 steps; multi-host = 6 steps of batch 32 on the
bundled `digits` dataset (8x8, read and augmented by jaxvision.data: each process loads only its
part of every global batch), 127.0.0.1 only, every process bounded by a timeout.
"""

import json
import os
import signal
import subprocess
import sys
import time

import chex
import numpy as np
import pytest

from jaxvision.training import checkpoints
from tests.reliability.harness import free_port_pair
from tests.training import fakes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 240


def _env(devices):
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _cmd(workdir, *extra):
    return [sys.executable, "-m", "tests.training.run_fake", workdir, *extra]


def _run(workdir, devices, *extra):
    p = subprocess.run(_cmd(workdir, *extra), cwd=REPO, env=_env(devices), capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert p.returncode == 0 and "FINISHED" in p.stdout, p.stderr[-3000:]
    return p


def _committed_steps(workdir):
    d = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(d):
        return []
    return sorted(int(n) for n in os.listdir(d) if n.isdigit())


def _variables(workdir):
    fakes.register_tiny()
    run = checkpoints.load_run(workdir)
    return run.step, run.variables


@pytest.mark.slow
def test_kill9_then_resume_gives_identical_parameters(tmp_path):
    ref, killed = str(tmp_path / "ref"), str(tmp_path / "killed")
    _run(ref, 2, "--steps", "30")

    p = subprocess.Popen(_cmd(killed, "--steps", "30", "--sleep", "0.15"), cwd=REPO, env=_env(2),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and not any(s >= 10 for s in _committed_steps(killed)):
        assert p.poll() is None, p.stderr.read().decode()[-3000:]
        time.sleep(0.2)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    steps_at_kill = _committed_steps(killed)
    assert p.returncode == -signal.SIGKILL and max(steps_at_kill) < 30, steps_at_kill

    out = _run(killed, 2, "--steps", "30")
    assert "Resuming from" in out.stderr
    (s_ref, v_ref), (s_res, v_res) = _variables(ref), _variables(killed)
    assert s_ref == s_res == 30
    # Bit-identical: same data batches, same keys, same optimizer state after the restart.
    chex.assert_trees_all_equal(v_ref, v_res)


def finish(procs):
    """Waits for every process (killing the rest on a timeout); each must print FINISHED and exit
    0. Returns their (stdout, stderr) pairs."""
    try:
        outs = [p.communicate(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (o, e) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and "FINISHED" in o, e[-3000:]
    return outs


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    """The bundled digits dataset, prepared once before any training process reads it."""
    from jaxvision.data import bundled

    d = str(tmp_path_factory.mktemp("tfds"))
    bundled.builder("digits", d)
    return d


def _metrics(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path, digits_dir):
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    addr = f"127.0.0.1:{free_port_pair()}"
    args = ("--steps", "6", "--ckpt_every", "6", "--digits", digits_dir)
    # The one-process reference runs at the same time as the pair (start-up dominates the time).
    procs = [
        subprocess.Popen(
            _cmd(two, *args, "--coordinator", addr, "--num_processes", "2", "--process_id", str(i)),
            cwd=REPO, env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ] + [subprocess.Popen(_cmd(one, *args), cwd=REPO, env=_env(4), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)]
    outs = finish(procs)
    # process 0 logs the join at INFO (the others show warnings only, cli.show_routine_logs)
    assert "process 0 of 2, 2 local / 4 global devices" in outs[0][1]
    (s1, v1), (s2, v2) = _variables(one), _variables(two)
    assert s1 == s2 == 6
    # real data: digits' 10 classes, 8x8 gray images
    assert v1["params"]["head"]["kernel"].shape == (8, 10)
    with open(os.path.join(two, "config.json")) as f:
        assert json.load(f)["data"]["name"] == "digits"
    assert not np.allclose(v1["params"]["head"]["kernel"], 0)
    chex.assert_trees_all_close(v1, v2, atol=1e-5, rtol=1e-5)
    # Only process 0 writes logs; the same losses, and the same validation result (every
    # validation example counted once whether one or two processes evaluate).
    m1, m2 = _metrics(one), _metrics(two)
    assert [sorted(m) for m in m1] == [sorted(m) for m in m2]
    for a, b in zip(m1, m2, strict=True):
        for k in ("train/loss", "val/nll", "val/top1"):
            if k in a:
                np.testing.assert_allclose(a[k], b[k], rtol=1e-5, err_msg=k)
