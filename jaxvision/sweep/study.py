"""The Optuna study behind a sweep: its definition, storage, sampler and pruner.

The study lives in a database (SQLite in the sweep directory by default, or any SQLAlchemy URL
such as ``postgresql://user@host/db``), so any number of workers on any hosts started with the
same command share it. The storage records a heartbeat of every running trial; the trial of a
worker that died (``kill -9``, a lost host) is marked failed once its heartbeat is older than the
grace period, and Optuna's ``RetryHeartbeatStaleTrialCallback`` queues it again with the same parameters —
the retry trains in the failed trial's directory, so it resumes from its checkpoints.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import warnings
from collections.abc import Mapping, Sequence

import optuna
import sqlalchemy
from optuna.distributions import BaseDistribution, distribution_to_json

from jaxvision import config as config_lib
from jaxvision.sweep import space as space_lib

SAMPLERS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("median", "asha", "none")
DIRECTIONS = ("maximize", "minimize")
DEFINITION_ATTR = "jaxvision_sweep"
_STORAGE_ATTEMPTS = 3
_FLAG_OF = {"config_digest": "recipe (--config and --config.* overrides)",
            "fixed": "--config.* overrides", "space": "--space", "metric": "--metric",
            "direction": "--direction"}


@dataclasses.dataclass(frozen=True)
class Sweep:
    """What every worker of one study must agree on.

    config: the recipe ('path.py[:arg]'); fixed: its ``--config.key=value`` overrides for every
    trial; space: config key -> distribution; metric: validation metric without 'val/' (e.g.
    'top1'); direction: 'maximize' | 'minimize'.
    """

    config: str
    fixed: tuple[str, ...]
    space: Mapping[str, BaseDistribution]
    metric: str
    direction: str

    def trial_overrides(self, params: Mapping[str, object]) -> list[str]:
        """The ``--config.key=value`` flags of one trial: the fixed ones, then the sampled ones."""
        return [*self.fixed, *space_lib.override_args(params)]

    def definition(self) -> dict:
        """A JSON-able record stored with the study; the recipe enters as the digest of its
        resolved config, so workers on hosts with other paths to the same recipe agree."""
        resolved = config_lib.from_flags(self.config, self.fixed)
        digest = hashlib.sha256(resolved.to_json_best_effort(sort_keys=True).encode()).hexdigest()
        return {
            "config_digest": digest[:16],
            "fixed": list(self.fixed),
            "space": {k: json.loads(distribution_to_json(d)) for k, d in self.space.items()},
            "metric": self.metric,
            "direction": self.direction,
        }


def make_sweep(config: str, fixed: Sequence[str], space_specs: Sequence[str], metric: str,
               direction: str | None) -> Sweep:
    """Parse and validate everything before any trial runs; ValueError/FileNotFoundError say
    what is wrong (unknown keys with close matches, a bound or choice the key's type rejects or
    that `config.check` rejects, as every trial's training would)."""
    from jaxvision.training.loop import EVAL_SCALARS

    metric = metric.removeprefix("val/")
    if metric not in EVAL_SCALARS:
        raise ValueError(f"--metric {metric!r} is not a validation metric; use one of "
                         f"{', '.join(EVAL_SCALARS)}.")
    natural = "minimize" if config_lib.metric_mode(metric) == "min" else "maximize"
    if direction not in (None, natural):
        raise ValueError(f"--direction {direction} contradicts --metric {metric}, which is better "
                         f"when it is {'smaller' if natural == 'minimize' else 'larger'}; "
                         f"leave --direction out or use --direction {natural}.")
    space = space_lib.parse_spaces(space_specs)
    base = config_lib.from_flags(config, fixed)
    config_lib.check(base)  # values a trial's training would reject (an unknown optimizer, ...)
    if "data" in base and base.data.get("eval_split", "test") == "":
        raise ValueError("the recipe has no validation split (data.eval_split=''), so trials have "
                         "nothing to compare; set --config.data.eval_split.")
    for key, dist in space.items():
        for value in space_lib.extremes(dist):
            config_lib.check(
                config_lib.from_flags(config, [*fixed, *space_lib.override_args({key: value})]))
    return Sweep(config, tuple(fixed), space, metric, natural)


def default_storage(workdir: str) -> str:
    return "sqlite:///" + os.path.join(os.path.abspath(workdir), "study.db")


def make_storage(url: str, *, heartbeat_interval: int, max_retries: int
                 ) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats (grace period: two intervals, Optuna's default) whose
    stale trials are queued again up to ``max_retries`` times."""
    engine_kwargs = {}
    if url.startswith("sqlite"):
        # Several workers write one SQLite file: wait for its lock rather than fail at once.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    for attempt in range(_STORAGE_ATTEMPTS):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=2 * heartbeat_interval,
                    heartbeat_stale_trial_callback=retry_callback(max_retries),
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as e:
            # Workers started together race to create the schema; the loser finds it made.
            error = e
            time.sleep(1.0 + attempt)
        except Exception as e:  # noqa: BLE001 - SQLAlchemy/driver errors of many kinds
            error = e
            break
    raise ValueError(f"--storage {url!r} cannot be opened: {_one_line(error)}")


def _one_line(error: BaseException) -> str:
    """A driver error in one line: SQLAlchemy appends the SQL and a '(Background on this
    error at: ...)' line; the driver's own exception (``.orig``) says what is wrong."""
    cause = getattr(error, "orig", None) or error
    text = " ".join(str(cause).split("\n")[0].split())
    return f"{type(cause).__name__}: {text}"



def retry_callback(max_retries: int):
    """Queues a failed trial again (same parameters, user attributes and reported values)."""
    with warnings.catch_warnings():  # "experimental" since Optuna 2.8
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=max_retries, inherit_intermediate_values=True)


def make_sampler(name: str, sweep: Sweep, seed: int | None) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler(space_lib.grid(sweep.space), seed=seed)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    raise ValueError(f"--sampler {name!r}: use one of {', '.join(SAMPLERS)}.")


def sampler_seed(seed: int | None, storage, name: str) -> int | None:
    """The sampler seed of this run of the command: ``seed`` for a new study; for a study that
    already has trials, a seed derived from ``seed`` and their count, so that a rerun that
    continues the study does not propose again the points its first run proposed (the sampler's
    random stream would restart, and the repeats are wasted trials)."""
    if seed is None:
        return None
    try:
        done = len(storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False))
    except KeyError:
        done = 0
    return int(seed) if done == 0 else (int(seed) * 1_000_003 + done) % 2**32


def make_pruner(name: str, *, startup_trials: int, warmup_steps: int) -> optuna.pruners.BasePruner:
    """median: stop a trial whose value is worse than the median of earlier trials at the same
    step (after ``startup_trials`` finished trials and ``warmup_steps`` steps); asha: asynchronous
    successive halving (minimum resource ``warmup_steps`` steps, or Optuna's estimate when 0)."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials,
                                           n_warmup_steps=warmup_steps)
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=warmup_steps or "auto")
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"--pruner {name!r}: use one of {', '.join(PRUNERS)}.")


def open_study(name: str, storage, sweep: Sweep, *, sampler=None, pruner=None) -> optuna.Study:
    """Create the study or join it; refuse to join a study defined by other flags."""
    study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                direction=sweep.direction, load_if_exists=True)
    mine = sweep.definition()
    theirs = study.user_attrs.get(DEFINITION_ATTR)
    if theirs is None:
        study.set_user_attr(DEFINITION_ATTR, mine)
    elif theirs != mine:
        differ = ", ".join(_FLAG_OF[k] for k in mine if mine[k] != theirs.get(k))
        raise ValueError(f"the study {name!r} in this storage was started with another "
                         f"{differ}; rerun with the same flags to continue it, or give a new "
                         "--study name.")
    return study
