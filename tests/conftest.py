"""Test session setup: 8 simulated CPU devices and TensorFlow kept off any GPU; the default job
trained once for the whole session (``default_job``).

XLA_FLAGS must be set before jax is imported, which is why it lives here.
"""

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

# LLVM at -O0 for the programs tests compile: most tests are bound by compiling (a MaxViT
# recipe's 72 programs: 96 -> 69 CPU s) and run each program once or twice on tiny inputs. The
# level changes the machine code's speed only, not what it computes (no fast-math at any level);
# the recipe runs whose accuracy the tests check run in subprocesses without XLA_FLAGS
# (train_recipe), at the default level, as a user's.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8 "
                                   "--xla_backend_optimization_level=0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # TF and JAX stay on the CPU in tests
os.environ.setdefault("MPLBACKEND", "Agg")
# The commands run by tests share one persistent compilation cache per test run, never ~/.cache:
# dozens of subprocesses compile the same LeNet steps, and a hit loads in milliseconds what takes
# seconds to compile. JAX keys entries by program, options, devices and versions, so a shared
# entry can only be a miss, never a wrong executable. xdist workers inherit the controller's
# variable, so all of them share its directory; the controller removes it at the end.
_OWN_CACHE = "JAXVISION_COMPILATION_CACHE" not in os.environ
if _OWN_CACHE:
    os.environ["JAXVISION_COMPILATION_CACHE"] = tempfile.mkdtemp(prefix="jaxvision-test-cache-")


def _checkpoints_written_by_one_replica():
    """Orbax writes a replicated array "replica-parallel" by default: each replica writes a slice,
    cut on its device by a small XLA program compiled per array shape and device. On the 8
    simulated CPU devices of these tests that is 8 compilations per distinct shape at a run's first
    save (408, ~20 s, for the EfficientNet recipe test), for the same bytes on disk. Here one
    replica writes each replicated array, as on a single device; sharded arrays are unaffected."""
    import jax
    import orbax.checkpoint as ocp

    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True)


_checkpoints_written_by_one_replica()


def pytest_sessionfinish(session, exitstatus):
    if _OWN_CACHE and "PYTEST_XDIST_WORKER" not in os.environ:
        shutil.rmtree(os.environ["JAXVISION_COMPILATION_CACHE"], ignore_errors=True)


# ---- the default job, trained once per test session ---------------------------------------------
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_JOB = os.path.join(REPO, "configs", "mnist5k_lenet.py")


def train_recipe(recipe: str, workdir: str, *args: str) -> dict:
    """``python -m jaxvision.train --config RECIPE --workdir WORKDIR ARGS``, as a user runs it (one
    CPU device): ``{'workdir', 'done': the result dict of its last line, 'stderr': its log}``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, "-m", "jaxvision.train", "--config", recipe,
                           f"--workdir={workdir}", *args],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("done: "), proc.stdout[-2000:]
    return {"workdir": workdir, "done": ast.literal_eval(last[len("done: "):]),
            "stderr": proc.stderr}


@pytest.fixture(scope="session")
def default_job(tmp_path_factory) -> dict:
    """The default job (``python -m jaxvision.train --config configs/mnist5k_lenet.py``, 744
    steps, ~1 min on 2 cores) trained once per session and shared by every test (and by both
    pytest-xdist workers, through a file lock): ``{'workdir': run directory, 'done': the result
    dict of its last line, 'stderr': its log}``. Read-only: copy the workdir to change it."""
    from filelock import FileLock

    # Under xdist every worker has its own basetemp; their common parent is shared.
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    record = root / "default_job.json"
    with FileLock(str(root / "default_job.lock")):
        if not record.exists():
            record.write_text(json.dumps(train_recipe(DEFAULT_JOB, str(root / "default_job"))))
        return json.loads(record.read_text())
