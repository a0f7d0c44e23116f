"""What a person reads after a sweep: a table of trials (best first) and Optuna's plots.

Files in the sweep directory:

  results.csv                   every trial: rank, trial, state, value, parameters, step, seconds,
                                workdir (rank only for completed trials); state 'interrupted'
                                marks a trial stopped by Ctrl-C/SIGTERM or a dead worker and
                                queued again (its value is the partial one, the note names the
                                trial that resumes it); 'fail' a trial that failed by itself
  results.md                    the same as a Markdown table
  optimization_history.png      the metric of each trial and the best so far
  intermediate_values.png       the metric at every evaluation (pruned trials stop early)
  param_importances.png         fANOVA importance of each parameter (two or more completed trials)
  slice_<key>.png               the metric against one parameter (log axis for log-uniform ones)

Files are written to a temporary name and renamed, so workers finishing together never leave a
half-written table or image.
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings

import optuna
from optuna.trial import TrialState

_STATE_ORDER = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1, TrialState.RUNNING: 2,
                TrialState.WAITING: 3, TrialState.FAIL: 4}


def _last_value(t: optuna.trial.FrozenTrial) -> float:
    """A completed trial's value, a pruned trial's last reported one, else NaN."""
    if t.value is not None:
        return t.value
    if t.intermediate_values:
        return t.intermediate_values[max(t.intermediate_values)]
    return math.nan


def _resumed_as(trials) -> dict[int, int]:
    """{failed trial: the trial that retried it}: Optuna's retry callback (a dead worker's or an
    interrupted trial, study.retry_callback) records the retried numbers in ``retry_history``."""
    return {t.system_attrs["retry_history"][-1]: t.number for t in trials
            if t.system_attrs.get("retry_history")}


def rows(study: optuna.Study, metric: str) -> list[dict]:
    """One dict per trial, best first: completed trials by value (the study's direction), then
    pruned ones by their last reported value, then running, queued and failed ones."""
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    keys = list(study.user_attrs.get("jaxvision_sweep", {}).get("space", {}))

    def order(t):
        v = _last_value(t)
        return (_STATE_ORDER[t.state], math.isnan(v), sign * v if not math.isnan(v) else 0.0,
                t.number)

    trials = study.get_trials(deepcopy=False)
    resumed_as = _resumed_as(trials)
    out, rank = [], 0
    for t in sorted(trials, key=order):
        rank += t.state == TrialState.COMPLETE
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if (
            t.datetime_complete and t.datetime_start) else math.nan
        interrupted = t.state == TrialState.FAIL and t.number in resumed_as and (
            "error" not in t.user_attrs)
        note = ("surplus" if t.user_attrs.get("surplus") else
                f"same as trial {t.user_attrs['duplicate_of']}" if "duplicate_of" in t.user_attrs
                else f"stopped before the end (partial value); resumed as trial "
                     f"{resumed_as[t.number]}" if interrupted
                else t.user_attrs.get("error", ""))
        out.append({
            "rank": rank if t.state == TrialState.COMPLETE else "",
            "trial": t.number,
            "state": "interrupted" if interrupted else t.state.name.lower(),
            f"val/{metric}": _last_value(t),
            **{k: t.params.get(k, "") for k in keys},
            "step": t.user_attrs.get("step", max(t.intermediate_values, default="")),
            "seconds": round(seconds, 1),
            "workdir": t.user_attrs.get("workdir", ""),
            "note": note,
        })
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def _replace(path: str, write) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    write(tmp)
    os.replace(tmp, path)


def _write_text(path: str, text: str) -> None:
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            f.write(text)

    _replace(path, write)


def write_tables(study: optuna.Study, workdir: str, metric: str) -> list[str]:
    """``results.csv`` and ``results.md``; returns their paths."""
    table = rows(study, metric)
    if not table:
        return []
    columns = list(table[0])
    buf = io.StringIO()
    w = csv.DictWriter(buf, columns)
    w.writeheader()
    w.writerows(table)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in columns) + " |" for r in table]
    paths = [os.path.join(workdir, "results.csv"), os.path.join(workdir, "results.md")]
    _write_text(paths[0], buf.getvalue())
    _write_text(paths[1], "\n".join(lines) + "\n")
    return paths


def figures(study: optuna.Study, metric: str) -> dict:
    """{file stem: matplotlib Figure} of Optuna's plots (see the module docstring), each with a
    title; a plot that needs more completed trials than the study has is left out."""
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as ovm

    target = f"val/{metric}"
    n_done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    plots = {  # stem: (draw, title, completed trials needed)
        "optimization_history": (lambda: ovm.plot_optimization_history(study, target_name=target),
                                 f"{study.study_name}: {target} per trial, best so far", 1),
        "intermediate_values": (lambda: ovm.plot_intermediate_values(study),
                                f"{target} at each evaluation (pruned trials stop early)", 0),
        "param_importances": (lambda: ovm.plot_param_importances(study, target_name=target),
                              f"Importance for {target} (fANOVA)", 2),
    }
    for key in study.user_attrs.get("jaxvision_sweep", {}).get("space", {}):
        plots[f"slice_{key}"] = (
            lambda key=key: ovm.plot_slice(study, params=[key], target_name=target),
            f"{target} vs {key}", 1)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for stem, (draw, title, needs) in plots.items():
            if n_done < needs:
                continue
            ax = draw()
            for loc in ("left", "right"):  # Optuna puts some titles on the left
                ax.set_title("", loc=loc)
            ax.set_title(title)
            if stem == "intermediate_values":
                ax.set_ylabel(target)
            ax.figure.tight_layout()
            out[stem] = ax.figure
    return out


def write_plots(study: optuna.Study, workdir: str, metric: str) -> list[str]:
    """The :func:`figures` as ``<workdir>/<stem>.png``; returns their paths."""
    import matplotlib.pyplot as plt

    paths = []
    for stem, fig in figures(study, metric).items():
        path = os.path.join(workdir, f"{stem}.png")
        _replace(path, lambda tmp, fig=fig: fig.savefig(tmp, dpi=110, format="png"))
        plt.close(fig)
        paths.append(path)
    return paths


def summary(study: optuna.Study, metric: str) -> dict:
    """The study in one JSON-able dict: trial counts per state and the best completed trial."""
    counts = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = None
    if done:
        b = study.best_trial
        best = {"trial": b.number, f"val/{metric}": b.value, "params": b.params,
                "workdir": b.user_attrs.get("workdir"), "command": b.user_attrs.get("command")}
    return {"study": study.study_name, "direction": study.direction.name.lower(),
            "trials": counts, "best": best}
