"""Drive ``python -m jaxvision.train`` as a user does: subprocesses on the bundled default job.

Every run uses the default recipe with a short schedule (``JOB``): 30 steps, a checkpoint every
10 (three checkpoints: the newest can be damaged and still leave two), metrics logged every step
(so a test can see how far a run got), one device. A run's cost is its start-up (TensorFlow, JAX,
the data), not its steps.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOTAL, EVERY = 30, 10
RECIPE = os.path.join(REPO, "configs", "mnist5k_lenet.py")


def job(total: int = TOTAL, every: int = EVERY) -> list[str]:
    """The default recipe shortened to ``total`` steps with a checkpoint every ``every``."""
    return ["--config", RECIPE, f"--config.total_steps={total}",
            f"--config.checkpoint_every_steps={every}", "--config.eval_every_steps=0",
            "--config.log_every_steps=1", "--config.progress_bar=False"]


JOB = job()
# Seconds any one run may take (start-up dominates; a loaded shared machine needs more).
TIMEOUT_S = float(os.environ.get("JAXVISION_TEST_TIMEOUT_S", 300))


def env() -> dict:
    e = dict(os.environ)
    e.update(XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu",
             TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
             PYTHONPATH=os.pathsep.join([REPO, e.get("PYTHONPATH", "")]))
    return e


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "jaxvision.train", *args]


def start(workdir: str, *args: str, job=JOB) -> subprocess.Popen:
    return subprocess.Popen(command(*job, f"--workdir={workdir}", *args), env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


def run(workdir: str, *args: str, job=JOB, timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command(*job, f"--workdir={workdir}", *args), env=env(),
                          capture_output=True, text=True, timeout=timeout or TIMEOUT_S, cwd=REPO)


def free_port_pair() -> int:
    """A port P with P and P+1 free on 127.0.0.1 (coordinator and jaxvision's roll call)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair on 127.0.0.1")


def start_processes(workdir: str, n: int, *args: str, job=JOB) -> list[subprocess.Popen]:
    """``n`` processes of one multi-host run on 127.0.0.1 (one device each); process 0 first."""
    address = f"127.0.0.1:{free_port_pair()}"
    return [start(workdir, f"--coordinator_address={address}", f"--num_processes={n}",
                  f"--process_id={i}", *args, job=job) for i in range(n)]


def finish_all(procs: list[subprocess.Popen], timeout: float | None = None) -> list[tuple[int, str, str]]:
    """``finish`` each process; every one still running after ``timeout`` s in all is killed."""
    end = time.monotonic() + (timeout or TIMEOUT_S)
    try:
        return [finish(p, max(1.0, end - time.monotonic())) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def finish(proc: subprocess.Popen, timeout: float | None = None) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout or TIMEOUT_S)
    return proc.returncode, out, err


def logged_steps(workdir: str) -> list[int]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    steps = []
    with open(path) as f:
        for line in f:
            try:
                steps.append(json.loads(line)["step"])
            except ValueError:
                pass
    return steps


def wait_for_step(proc: subprocess.Popen, workdir: str, step: int,
                  timeout: float | None = None) -> int:
    """Block until the run has logged ``step`` (or later); returns the last logged step."""
    timeout = timeout or TIMEOUT_S
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        steps = logged_steps(workdir)
        if steps and max(steps) >= step:
            return max(steps)
        if proc.poll() is not None:
            raise AssertionError(f"run ended early (rc {proc.returncode}): {proc.stderr.read()}")
        time.sleep(0.02)
    raise AssertionError(f"step {step} not reached in {timeout} s")


def signal_at(proc: subprocess.Popen, workdir: str, step: int, sig=signal.SIGTERM) -> int:
    """Send ``sig`` once step ``step`` is logged; returns the last step logged before it."""
    seen = wait_for_step(proc, workdir, step)
    proc.send_signal(sig)
    return seen


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def assert_one_error(result, *, status: int = 2) -> str:
    """The run failed with ``status``, one ``error:`` line and no traceback; returns the line."""
    assert result.returncode == status, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = errors(result.stderr)
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


STOPPED = "stopped by {} at step {}; checkpoint saved; rerun the same command to resume"


def stopped_step(stderr: str, name: str) -> int:
    """The step of the one ``stopped by <name> at step N; ...`` line of ``stderr``."""
    lines = [x for x in stderr.splitlines() if x.startswith(f"stopped by {name} at step ")]
    assert len(lines) == 1, stderr[-3000:]
    step = int(lines[0].split()[5].rstrip(";"))
    assert lines[0] == STOPPED.format(name, step)
    return step


@contextlib.contextmanager
def tmpfs(path: str, size: str):
    """Mount a tmpfs of ``size`` (e.g. '1200k') at ``path`` meanwhile; raises PermissionError
    when not root, OSError when mounting fails."""
    if os.geteuid() != 0:
        raise PermissionError("mounting a tmpfs needs root")
    os.makedirs(path, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                             capture_output=True, text=True)
    if mounted.returncode:
        raise OSError(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)


def checkpoint_steps(workdir: str) -> list[int]:
    d = os.path.join(workdir, "checkpoints")
    return sorted(int(s) for s in os.listdir(d) if s.isdigit()) if os.path.isdir(d) else []


def saved_state(workdir: str, step: int) -> list[np.ndarray]:
    """Every array of checkpoint ``step`` (read with Orbax directly, no digest check)."""
    from jaxvision.training import checkpoints

    store = checkpoints.CheckpointStore(checkpoints.checkpoint_dir(workdir), async_save=False,
                                        read_only=True)
    try:
        raw, _ = store.restore_raw(step)
    finally:
        store.close()
    return [np.asarray(x) for x in jax.tree.leaves(raw)]


def bit_identical(workdir_a: str, workdir_b: str, step: int = TOTAL) -> bool:
    a, b = saved_state(workdir_a, step), saved_state(workdir_b, step)
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        for x, y in zip(a, b, strict=True))
