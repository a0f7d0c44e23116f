"""A sweep worker: runs trials of one study until the study holds N finished trials.

Start the same command on several processes or hosts and each runs its own trials of the shared
study. "Finished" means completed or pruned. Before a trial, the worker fails stale trials (those
of dead workers; their retries are queued, see ``jaxvision.sweep.study``) and counts the trials
that are finished, running or queued; it starts one only while that count is below N. Two
workers can pass this check at the same moment, so a started trial also checks its rank among
them and gives up (marked failed, user attribute ``surplus``) if it would be trial N+1. When the
count is full but other workers' trials still run, the worker waits for them: if one of them
dies, its retry is run here, so the last worker leaves N finished trials behind.

Trial ``k`` trains in ``<workdir>/trials/<k>`` (a retry trains in its original trial's folder and
resumes from its checkpoints). A point equal to an earlier trial's is not trained again: the trial
waits for that one to finish and takes over its outcome (user attribute ``duplicate_of``).
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from collections.abc import Callable

import optuna
from optuna.trial import TrialState

from jaxvision import config as config_lib
from jaxvision.sweep import report
from jaxvision.sweep import space as space_lib
from jaxvision.sweep import study as study_lib
from jaxvision.sweep import trial as trial_lib
from jaxvision.sweep.study import Sweep

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
COUNTED = (*FINISHED, TrialState.RUNNING, TrialState.WAITING)
TWIN_STATES = (*FINISHED, TrialState.RUNNING)
MAX_FAILURES_IN_A_ROW = 3  # a recipe that cannot train should not fill the study with failures


class SurplusTrialError(RuntimeError):
    """The study already has its N trials; this one is not run."""


def prepare_data(sweep: Sweep, workdir: str) -> None:
    """Build or download the recipe's dataset once, before any trial, so that parallel trials
    (of this and other workers, serialised by a lock file in ``workdir``) never prepare it at
    the same time. A dataset chosen by a searched ``data.*`` key is prepared by its trials.
    Raises ValueError (jaxvision.data.DataError) for a dataset that cannot be had."""
    import fcntl

    from jaxvision.data import sources

    data = config_lib.from_flags(sweep.config, sweep.fixed).data
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, ".prepare_data.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sources.get_source(data)


def fail_stale_trials(study: optuna.Study) -> None:
    """Mark the trials of dead workers failed (their retries get queued by the storage)."""
    with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def trial_dir(workdir: str, number: int) -> str:
    return os.path.join(os.path.abspath(workdir), "trials", f"{number:04d}")


class Worker:
    """Runs trials of ``study`` (defined by ``sweep``) until it holds ``n_trials`` finished ones.

    ``poll_seconds``: how often to look again while other workers' trials run. ``log``: one line
    per event (trial started, finished, pruned, failed).
    """

    def __init__(self, sweep: Sweep, study: optuna.Study, workdir: str, n_trials: int, *,
                 poll_seconds: float, max_retries: int, log: Callable[[str], None] = print):
        if n_trials < 1:
            raise ValueError(f"--trials must be >= 1, got {n_trials}.")
        self.sweep, self.study, self.workdir, self.n_trials = sweep, study, workdir, n_trials
        self.poll_seconds, self.max_retries, self.log = poll_seconds, max_retries, log
        self.ran = 0
        self._current: int | None = None

    # ---- the worker loop ---------------------------------------------------------------------
    def run(self) -> int:
        """Run trials until the study is done; returns how many this worker ran."""
        prepare_data(self.sweep, self.workdir)
        failures = 0
        while (action := self._next_action()) != "done":
            if action == "wait":
                time.sleep(self.poll_seconds)
                continue
            last = self._run_one()
            failures = failures + 1 if "error" in last.user_attrs else 0
            if failures >= MAX_FAILURES_IN_A_ROW:
                raise trial_lib.TrialError(
                    f"{failures} trials in a row failed; the last one: {last.user_attrs['error']}")
        return self.ran

    def _run_one(self) -> optuna.trial.FrozenTrial:
        """One trial (Optuna records its outcome); the tables are updated; returns its record."""
        try:
            self.study.optimize(self.objective, n_trials=1,
                                catch=(trial_lib.TrialError, SurplusTrialError))
        except KeyboardInterrupt:
            self._requeue_interrupted()
            raise
        report.write_tables(self.study, self.workdir, self.sweep.metric)
        number, self._current = self._current, None  # an interrupt from now on is not its
        return self.study.get_trials(deepcopy=False)[number]

    def _next_action(self) -> str:
        """'run' a trial, 'wait' for other workers' trials, or 'done'."""
        fail_stale_trials(self.study)
        sampler = self.study.sampler
        if isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(self.study):
            return "done"
        trials = self.study.get_trials(deepcopy=False, states=COUNTED)
        if len(trials) < self.n_trials or any(t.state == TrialState.WAITING for t in trials):
            return "run"
        return "wait" if any(t.state == TrialState.RUNNING for t in trials) else "done"

    def _requeue_interrupted(self) -> None:
        """An interrupted trial (Ctrl-C, SIGTERM) is queued again, like a dead worker's one."""
        if self._current is None:
            return
        frozen = self.study.get_trials(deepcopy=False)[self._current]
        if frozen.state == TrialState.FAIL:
            study_lib.retry_callback(self.max_retries)(self.study, frozen)
            self.log(f"trial {frozen.number} interrupted; rerun the command to resume it from "
                     f"its checkpoints in {frozen.user_attrs.get('workdir', '?')}")

    # ---- one trial ---------------------------------------------------------------------------
    def objective(self, trial: optuna.Trial) -> float:
        self._current = trial.number
        self._check_rank(trial)
        params = space_lib.suggest(trial, self.sweep.space)
        shown = ", ".join(f"{k}={space_lib.flag_value(v)}" for k, v in params.items())
        duplicate = self._finished_twin(trial.number, params)
        if duplicate is not None:
            return self._take_over(trial, duplicate)
        workdir = trial.user_attrs.get("workdir") or trial_dir(self.workdir, trial.number)
        resuming = "workdir" in trial.user_attrs
        overrides = self.sweep.trial_overrides(params)
        trial.set_user_attr("workdir", workdir)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("command", trial_lib.command_line(self.sweep.config, workdir,
                                                              overrides))
        self.log(f"trial {trial.number} ({shown}): {'resuming' if resuming else 'training'} "
                 f"in {workdir}")
        self.ran += 1
        key = f"val/{self.sweep.metric}"

        def on_evaluate(step: int, metrics: dict) -> bool:
            trial.report(float(metrics[key]), step)
            return trial.should_prune()

        try:
            result = trial_lib.run(self.sweep.config, overrides, workdir, on_evaluate)
        except trial_lib.TrialError as e:
            trial.set_user_attr("error", str(e))
            self.log(f"trial {trial.number} failed: {e}")
            raise
        trial.set_user_attr("step", int(result["step"]))
        if result.get("stopped") == "on_evaluate":
            self.log(f"trial {trial.number} pruned at step {result['step']} "
                     f"({key}={result[key]:.4f})")
            raise optuna.TrialPruned(f"pruned at step {result['step']}")
        self.log(f"trial {trial.number} finished at step {result['step']}: {key}={result[key]:.4f}")
        return float(result[key])

    def _check_rank(self, trial: optuna.Trial) -> None:
        earlier = [t for t in self.study.get_trials(deepcopy=False, states=COUNTED)
                   if t.number < trial.number]
        if len(earlier) >= self.n_trials:
            trial.set_user_attr("surplus", True)
            raise SurplusTrialError(f"the study already has its {self.n_trials} trials")

    def _finished_twin(self, number: int, params: dict) -> optuna.trial.FrozenTrial | None:
        """An earlier trial with the same point, once it has finished; None when there is none
        (or it failed). Waits while one is still running (e.g. workers started with one seed)."""
        while True:
            twins = [t for t in self.study.get_trials(deepcopy=False, states=TWIN_STATES)
                     if t.number < number and t.params == params]
            finished = [t for t in twins if t.state in FINISHED]
            if finished or not twins:
                return finished[0] if finished else None
            time.sleep(self.poll_seconds)
            fail_stale_trials(self.study)  # its worker may be dead

    def _take_over(self, trial: optuna.Trial, twin: optuna.trial.FrozenTrial) -> float:
        trial.set_user_attr("duplicate_of", twin.number)
        for k in ("workdir", "step"):
            if k in twin.user_attrs:
                trial.set_user_attr(k, twin.user_attrs[k])
        self.log(f"trial {trial.number}: same point as trial {twin.number}; its outcome is reused")
        if twin.state == TrialState.PRUNED:
            raise optuna.TrialPruned(f"same point as pruned trial {twin.number}")
        return float(twin.value)
