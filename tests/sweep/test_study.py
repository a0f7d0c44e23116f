"""End to end, with the bundled data and a tiny total_steps: the README's command from outside
the repository with two workers on one SQLite study, a worker killed mid-trial and restarted, and
the median pruner stopping a poor run through the training loop."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from jaxvision.sweep import study as study_lib
from jaxvision.sweep import worker as worker_lib

REPO = Path(__file__).resolve().parents[2]
TINY = ["--config.batch_size=32", "--config.log_every_steps=4", "--config.progress_bar=False",
        "--config.schedule.warmup_steps=0"]
pytestmark = pytest.mark.slow


def _readme_command() -> list[str]:
    """The ``python -m jaxvision.sweep`` command of the README (continuation lines joined)."""
    text = (REPO / "README.md").read_text().replace("\\\n", " ")
    line = next(x for x in text.splitlines() if x.startswith("python -m jaxvision.sweep"))
    return [sys.executable, *shlex.split(line)[1:]]


def _outside_repo(tmp_path) -> dict:
    """cwd: tmp_path holding only the user's recipe; sys.path: only the jaxvision package (what
    ``pip install`` ships: pyproject includes ``jaxvision*``), not the repository root."""
    (tmp_path / "configs").mkdir()
    shutil.copy(REPO / "configs" / "mnist5k_lenet.py", tmp_path / "configs")
    site = tmp_path / "site"
    site.mkdir()
    (site / "jaxvision").symlink_to(REPO / "jaxvision")
    return {**os.environ, "PYTHONPATH": str(site),
            "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}


def _val_curve(workdir) -> dict[int, float]:
    """{step: val/top1} read from the run's own metrics.jsonl."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(x) for x in f if x.strip()]
    return {r["step"]: r["val/top1"] for r in rows if "val/top1" in r}


def test_packaging_ships_the_sweep_command():
    import tomllib

    import setuptools

    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    found = setuptools.find_packages(str(REPO), include=include)
    assert "jaxvision.sweep" in found and not any(p.startswith("experiments") for p in found)


def test_two_workers_from_outside_the_repo_share_one_study(tmp_path):
    env = _outside_repo(tmp_path)
    cmd = [*_readme_command(), "--trials=3", "--heartbeat_interval=2", "--config.total_steps=4",
           "--config.eval_every_steps=4", *TINY]
    workers = [subprocess.Popen(cmd + extra, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for extra in ([], ["--json"])]
    outs = [w.communicate(timeout=900) for w in workers]
    for w, (_, err) in zip(workers, outs, strict=True):
        assert w.returncode == 0 and "Traceback" not in err, err[-3000:]
    assert "best: trial" in outs[0][0]
    sweep_dir = tmp_path / "workdirs" / "sweep"
    study = optuna.load_study(study_name="lenet_lr_wd", storage=f"sqlite:///{sweep_dir}/study.db")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3  # exactly N, none failed
    assert len({tuple(t.params.values()) for t in trials}) == 3
    assert len({t.user_attrs["workdir"] for t in trials}) == 3
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers trained
    for t in trials:  # each value is what that run itself logged
        assert _val_curve(t.user_attrs["workdir"]) == {4: t.value}
        assert t.user_attrs["workdir"].startswith(str(sweep_dir / "trials"))
    summary = json.loads(outs[1][0])  # --json: stdout is one JSON document
    assert summary["best"]["trial"] == study.best_trial.number
    assert summary["best"]["val/top1"] == study.best_value and summary["trials"] == {"complete": 3}
    with open(sweep_dir / "results.csv") as f:
        lines = f.read().splitlines()
    best_first = sorted(trials, key=lambda t: -t.value)
    assert [int(x.split(",")[1]) for x in lines[1:]] == [t.number for t in best_first]
    for png in ("optimization_history", "param_importances", "slice_schedule.base_lr",
                "slice_optimizer.weight_decay"):
        assert (sweep_dir / f"{png}.png").stat().st_size > 5000


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()
    except FileNotFoundError:
        return False


def test_a_killed_worker_trial_is_resumed_and_the_study_stays_consistent(tmp_path):
    env = _outside_repo(tmp_path)
    cmd = [*_readme_command(), "--trials=1", "--heartbeat_interval=1", "--config.total_steps=12",
           "--config.eval_every_steps=4", "--config.checkpoint_every_steps=4", *TINY]
    trial_dir = tmp_path / "workdirs" / "sweep" / "trials" / "0000"
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (trial_dir / "checkpoints" / "4").is_dir():
        assert first.poll() is None and time.time() < deadline, "no checkpoint at step 4"
        time.sleep(0.2)
    first.kill()  # SIGKILL: no clean-up in the worker at all
    first.wait()
    child = int(re.search(r"# trial process (\d+)", (trial_dir / "train.log").read_text())[1])
    deadline = time.time() + 60
    while _pid_alive(child):  # the orphaned training process stops by itself
        assert time.time() < deadline, "the trial process outlived its worker"
        time.sleep(0.2)
    log_before = (trial_dir / "train.log").read_text()

    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    study = optuna.load_study(study_name="lenet_lr_wd",
                              storage=f"sqlite:///{tmp_path}/workdirs/sweep/study.db")
    killed, retry = study.get_trials()
    assert killed.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.params == killed.params and retry.system_attrs["failed_trial"] == 0
    assert retry.user_attrs["workdir"] == killed.user_attrs["workdir"] == str(trial_dir)
    resumed = (trial_dir / "train.log").read_text()[len(log_before):]
    # "Resuming from ... (step k of 12)", or "Restored ...: step 12 is this config's last step"
    # when the killed trial had already saved its final checkpoint.
    m = re.search(r"Resuming from .* \(step (\d+) of 12\)|Restored .*: step (\d+) is", resumed)
    assert int(m[1] or m[2]) >= 4, resumed
    curve = _val_curve(trial_dir)
    assert max(curve) == 12 and retry.value == curve[12] and retry.user_attrs["step"] == 12


def test_median_pruner_stops_a_poor_run_and_keeps_its_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=1")  # trial processes
    config = str(REPO / "configs" / "mnist5k_lenet.py")
    fixed = ["--config.total_steps=20", "--config.eval_every_steps=10", *TINY]
    sweep = study_lib.make_sweep(config, fixed, ["schedule.base_lr=loguniform(1e-8,1e-1)"],
                                 "top1", None)
    storage = study_lib.make_storage(study_lib.default_storage(tmp_path), heartbeat_interval=5,
                                     max_retries=0)
    pruner = study_lib.make_pruner("median", startup_trials=1, warmup_steps=0)
    study = study_lib.open_study("prune", storage, sweep, pruner=pruner)
    study.enqueue_trial({"schedule.base_lr": 1e-2})
    study.enqueue_trial({"schedule.base_lr": 1e-8})  # learns nothing in 20 steps
    worker_lib.Worker(sweep, study, str(tmp_path), 2, poll_seconds=1, max_retries=0,
                      log=lambda line: None).run()
    good, poor = study.get_trials()
    good_curve = _val_curve(good.user_attrs["workdir"])
    poor_curve = _val_curve(poor.user_attrs["workdir"])
    assert good.state == TrialState.COMPLETE and sorted(good_curve) == [10, 20]
    # the median of one completed trial is its value: the poor run is below it at step 10
    assert poor_curve[10] < good_curve[10]
    assert poor.state == TrialState.PRUNED and poor.user_attrs["step"] == 10
    assert sorted(poor_curve) == [10] and poor.intermediate_values == {10: poor_curve[10]}
    ckpts = Path(poor.user_attrs["workdir"]) / "checkpoints"
    assert max(int(p.name) for p in ckpts.iterdir() if p.name.isdigit()) == 10
