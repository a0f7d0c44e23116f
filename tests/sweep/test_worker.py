"""The worker's trial budget, duplicate points and pruning plumbing, on an in-memory study with
the training run replaced by a scripted one (the real loop is exercised in test_study.py)."""

import os

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState, create_trial

from jaxvision.sweep import study as study_lib
from jaxvision.sweep import trial as trial_lib
from jaxvision.sweep import worker as worker_lib

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "mnist5k_lenet.py")
LR = optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)


def _worker(tmp_path, n, pruner=None, sampler=None):
    sweep = study_lib.make_sweep(CONFIG, [], ["schedule.base_lr=loguniform(1e-4,1e-1)"], "top1",
                                 None)
    study = study_lib.open_study("s", None, sweep, pruner=pruner, sampler=sampler)
    return worker_lib.Worker(sweep, study, str(tmp_path), n, poll_seconds=0.01, max_retries=1,
                             log=lambda line: None)


def _finished(study, value, lr, state=TrialState.COMPLETE):
    study.add_trial(create_trial(state=state, value=value if state == TrialState.COMPLETE else None,
                                 params={"schedule.base_lr": lr},
                                 distributions={"schedule.base_lr": LR},
                                 intermediate_values={10: value}))


def test_budget_counts_finished_running_and_queued_trials(tmp_path):
    w = _worker(tmp_path, 3)
    assert w._next_action() == "run"
    _finished(w.study, 0.5, 1e-3)
    _finished(w.study, 0.2, 1e-2, TrialState.PRUNED)
    w.study.add_trial(create_trial(state=TrialState.FAIL, params={}, distributions={}))
    assert w._next_action() == "run"  # a failed trial does not count
    running = w.study.ask()  # another worker's trial
    assert w._next_action() == "wait"
    w.study.tell(running, 0.4)
    assert w._next_action() == "done"
    w.study.enqueue_trial({"schedule.base_lr": 3e-3})  # e.g. a dead worker's trial queued again
    assert w._next_action() == "run"


def test_a_trial_beyond_the_budget_gives_up(tmp_path, monkeypatch):
    """Two workers passing the budget check together: the later-numbered trial is surplus."""
    monkeypatch.setattr(trial_lib, "run", lambda *a: pytest.fail("a surplus trial trained"))
    w = _worker(tmp_path, 1)
    w.study.ask()  # the other worker's trial, still running
    w.study.optimize(w.objective, n_trials=1, catch=(worker_lib.SurplusTrialError,))
    last = w.study.trials[-1]
    assert last.state == TrialState.FAIL and last.user_attrs["surplus"] is True


def test_a_point_already_finished_is_not_trained_again(tmp_path, monkeypatch):
    monkeypatch.setattr(trial_lib, "run", lambda *a: pytest.fail("a duplicate point trained"))
    w = _worker(tmp_path, 5)
    _finished(w.study, 0.75, 1e-3)
    _finished(w.study, 0.1, 1e-4, TrialState.PRUNED)
    for lr in (1e-3, 1e-4):
        w.study.enqueue_trial({"schedule.base_lr": lr})
        w.study.optimize(w.objective, n_trials=1)
    twin_of_complete, twin_of_pruned = w.study.trials[-2:]
    assert twin_of_complete.value == 0.75 and twin_of_complete.user_attrs["duplicate_of"] == 0
    assert twin_of_pruned.state == TrialState.PRUNED
    assert twin_of_pruned.user_attrs["duplicate_of"] == 1


def _scripted_run(curves, calls):
    """A stand-in for trial.run: reports curves[lr] at steps 10, 20, 30 as the loop would and
    stops when told to (as the loop's on_evaluate hook does)."""
    def run(config, overrides, workdir, on_evaluate):
        lr = float(overrides[-1].split("=")[1])
        calls.append((overrides, workdir))
        for step, v in zip((10, 20, 30), curves[lr], strict=True):
            if on_evaluate(step, {"val/top1": v, "val/nll": 1.0}):
                return {"step": step, "val/top1": v, "stopped": "on_evaluate"}
        return {"step": 30, "val/top1": v}
    return run


def test_median_pruner_stops_a_trial_below_the_median(tmp_path, monkeypatch):
    curves = {1e-3: (0.5, 0.7, 0.9), 1e-2: (0.6, 0.8, 0.95), 1e-4: (0.55, 0.6, 0.61),
              1e-1: (0.1, 0.2, 0.3)}
    calls = []
    monkeypatch.setattr(trial_lib, "run", _scripted_run(curves, calls))
    pruner = study_lib.make_pruner("median", startup_trials=2, warmup_steps=0)
    w = _worker(tmp_path, 4, pruner=pruner)
    for lr in curves:
        w.study.enqueue_trial({"schedule.base_lr": lr})
    assert w.run() == 4
    # Independent rule (Optuna's MedianPruner): after 2 completed trials, a trial stops at the
    # first step where its value is below the median of the completed trials' values there.
    completed, expected = [], []
    for curve in curves.values():
        stop = next((i for i, v in enumerate(curve) if len(completed) >= 2
                     and v < float(np.median([c[i] for c in completed]))), None)
        expected.append(("complete", 30) if stop is None else ("pruned", (10, 20, 30)[stop]))
        if stop is None:
            completed.append(curve)
    got = [(t.state.name.lower(), t.user_attrs["step"]) for t in w.study.trials]
    assert got == expected == [("complete", 30), ("complete", 30), ("pruned", 20),
                               ("pruned", 10)]
    assert [c[1] for c in calls] == [worker_lib.trial_dir(tmp_path, i) for i in range(4)]
    assert all(c[0][-1].startswith("--config.schedule.base_lr=") for c in calls)


def test_a_study_started_with_other_flags_is_not_joined(tmp_path):
    url = study_lib.default_storage(tmp_path)
    storage = study_lib.make_storage(url, heartbeat_interval=60, max_retries=1)
    lr = study_lib.make_sweep(CONFIG, [], ["schedule.base_lr=loguniform(1e-4,1e-1)"], "top1", None)
    study_lib.open_study("s", storage, lr)
    study_lib.open_study("s", storage, lr)  # the same flags: joins
    wd = study_lib.make_sweep(CONFIG, [], ["optimizer.weight_decay=uniform(0,0.1)"], "top1", None)
    with pytest.raises(ValueError, match="another --space; rerun with the same flags"):
        study_lib.open_study("s", storage, wd)
    fixed = study_lib.make_sweep(CONFIG, ["--config.batch_size=64"],
                                 ["schedule.base_lr=loguniform(1e-4,1e-1)"], "top1", None)
    with pytest.raises(ValueError, match=r"was started with another"):
        study_lib.open_study("s", storage, fixed)
    with pytest.raises(ValueError, match="cannot be opened"):
        study_lib.make_storage("nosuchdb://x/y", heartbeat_interval=60, max_retries=1)


def test_a_point_being_trained_elsewhere_is_waited_for(tmp_path, monkeypatch):
    """Workers started with one seed propose the same point: the later trial waits for the
    earlier one instead of training it twice."""
    monkeypatch.setattr(trial_lib, "run", lambda *a: pytest.fail("a duplicate point trained"))
    w = _worker(tmp_path, 5)
    w.study.enqueue_trial({"schedule.base_lr": 1e-3})
    other = w.study.ask()  # another worker is training this point
    other.suggest_float("schedule.base_lr", 1e-4, 1e-1, log=True)
    sleeps = []

    def sleep(seconds):  # the other worker finishes while this one waits
        sleeps.append(seconds)
        w.study.tell(other, 0.8)

    monkeypatch.setattr(worker_lib.time, "sleep", sleep)
    w.study.enqueue_trial({"schedule.base_lr": 1e-3})
    w.study.optimize(w.objective, n_trials=1)
    assert sleeps and w.study.trials[-1].value == 0.8
    assert w.study.trials[-1].user_attrs["duplicate_of"] == other.number


@pytest.mark.parametrize("sampler, spec, n, expected", [
    ("tpe", "schedule.base_lr=loguniform(1e-4,1e-1)", 3, 3),
    ("random", "schedule.base_lr=loguniform(1e-4,1e-1)", 3, 3),
    ("cmaes", "schedule.base_lr=loguniform(1e-4,1e-1)", 3, 3),
    ("grid", "schedule.base_lr=choice(0.001,0.01)", 5, 2),  # stops when the grid is exhausted
])
def test_every_sampler_runs_its_trials(tmp_path, monkeypatch, sampler, spec, n, expected):
    def run(config, overrides, workdir, on_evaluate):
        lr = float(overrides[-1].split("=")[1])
        return {"step": 30, "val/top1": 1.0 - lr}

    monkeypatch.setattr(trial_lib, "run", run)
    sweep = study_lib.make_sweep(CONFIG, [], [spec], "top1", None)
    study = study_lib.open_study("s", None, sweep,
                                 sampler=study_lib.make_sampler(sampler, sweep, seed=0))
    worker_lib.Worker(sweep, study, str(tmp_path), n, poll_seconds=0.01, max_retries=1,
                      log=lambda line: None).run()
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(study.trials) == len(done) == expected
    assert all(t.value == 1.0 - t.params["schedule.base_lr"] for t in done)
    if sampler == "grid":
        assert sorted(t.params["schedule.base_lr"] for t in done) == [0.001, 0.01]


@pytest.mark.parametrize("url", ["sqlite:////nonexistent-jaxvision-dir/sub/study.db", "notaurl"])
def test_a_storage_that_cannot_be_opened_is_one_line(url, monkeypatch):
    # SQLAlchemy's messages carry the SQL and a "(Background on this error at: ...)" line; the
    # command's `error: ...` must stay one line.
    monkeypatch.setattr(study_lib, "_STORAGE_ATTEMPTS", 1)
    with pytest.raises(ValueError, match="cannot be opened") as e:
        study_lib.make_storage(url, heartbeat_interval=60, max_retries=1)
    assert "\n" not in str(e.value) and "Background on this error" not in str(e.value)


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_a_seeded_rerun_does_not_propose_the_first_runs_points_again(tmp_path, sampler):
    # Regression: rerunning `sweep --seed S` to continue a study restarted the sampler's random
    # stream, so it proposed the first run's points again (trials wasted as "same point").
    sweep = study_lib.make_sweep(CONFIG, [], ["schedule.base_lr=loguniform(1e-4,1e-1)"], "top1",
                                 None)
    storage = study_lib.make_storage(study_lib.default_storage(tmp_path), heartbeat_interval=60,
                                     max_retries=1)

    def one_run():
        seed = study_lib.sampler_seed(7, storage, "s")
        study = study_lib.open_study("s", storage, sweep,
                                     sampler=study_lib.make_sampler(sampler, sweep, seed))
        out = []
        for _ in range(2):
            trial = study.ask()
            out.append(trial.suggest_float("schedule.base_lr", 1e-4, 1e-1, log=True))
            study.tell(trial, 0.5)
        return out

    first, second = one_run(), one_run()
    assert not set(first) & set(second)
    assert study_lib.sampler_seed(7, storage, "new") == 7 and study_lib.sampler_seed(None, storage, "s") is None
