"""Hyper-parameter search on Optuna: ``python -m jaxvision.sweep`` (see ``__main__``)."""

from jaxvision.sweep.report import figures, rows, summary, write_plots, write_tables
from jaxvision.sweep.space import parse_space, parse_spaces
from jaxvision.sweep.study import (
    Sweep,
    default_storage,
    make_pruner,
    make_sampler,
    make_storage,
    make_sweep,
    open_study,
)
from jaxvision.sweep.trial import TrialError
from jaxvision.sweep.worker import Worker, prepare_data, trial_dir

__all__ = [
    "Sweep", "TrialError", "Worker", "default_storage", "figures", "make_pruner", "make_sampler",
    "make_storage", "make_sweep", "open_study", "parse_space", "parse_spaces", "prepare_data",
    "rows", "summary", "trial_dir", "write_plots", "write_tables",
]
