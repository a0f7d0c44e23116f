"""results.csv / results.md order and content, and the plots' axes and titles."""

import csv
import os

import matplotlib.pyplot as plt
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from jaxvision.sweep import report

DISTS = {"schedule.base_lr": FloatDistribution(1e-4, 1e-1, log=True),
         "data.mixup_alpha": FloatDistribution(0.0, 0.4),
         "model.name": CategoricalDistribution(["lenet5", "alexnet"])}
# (state, value or last intermediate value, lr, alpha, name)
TRIALS = [(TrialState.COMPLETE, 0.91, 1e-3, 0.1, "lenet5"),
          (TrialState.PRUNED, 0.30, 9e-2, 0.3, "alexnet"),
          (TrialState.COMPLETE, 0.97, 3e-3, 0.0, "lenet5"),
          (TrialState.FAIL, None, 2e-4, 0.2, "alexnet"),
          (TrialState.COMPLETE, 0.95, 2e-2, 0.4, "alexnet"),
          (TrialState.PRUNED, 0.50, 1e-4, 0.2, "lenet5")]


def _study(direction="maximize"):
    study = optuna.create_study(study_name="demo", direction=direction)
    study.set_user_attr("jaxvision_sweep", {"space": {
        k: {"name": type(d).__name__, "attributes": {"log": getattr(d, "log", False)}}
        for k, d in DISTS.items()}})
    for state, v, lr, alpha, name in TRIALS:
        study.add_trial(create_trial(
            state=state, value=v if state == TrialState.COMPLETE else None,
            params={"schedule.base_lr": lr, "data.mixup_alpha": alpha, "model.name": name},
            distributions=DISTS, intermediate_values={} if v is None else {100: v},
            user_attrs={"workdir": f"/w/{lr}", "step": 100}))
    return study


def test_table_is_best_first_then_pruned_then_failed(tmp_path):
    study = _study()
    paths = report.write_tables(study, str(tmp_path), "top1")
    with open(paths[0]) as f:
        table = list(csv.DictReader(f))
    # Independent order: completed by value (descending), pruned by last value, then the rest.
    complete = sorted((t for t in TRIALS if t[0] == TrialState.COMPLETE), key=lambda t: -t[1])
    pruned = sorted((t for t in TRIALS if t[0] == TrialState.PRUNED), key=lambda t: -t[1])
    expected = [TRIALS.index(t) for t in complete + pruned] + [3]
    assert [int(r["trial"]) for r in table] == expected
    assert [r["rank"] for r in table] == ["1", "2", "3", "", "", ""]
    assert [r["state"] for r in table][2:4] == ["complete", "pruned"]
    assert float(table[0]["val/top1"]) == 0.97 and table[0]["schedule.base_lr"] == "0.003"
    md = (tmp_path / "results.md").read_text().splitlines()
    assert len(md) == 2 + len(TRIALS) and md[2].startswith("| 1 | 2 | complete | 0.97 |")
    # minimizing (e.g. nll) reverses the completed trials
    study_min = _study("minimize")
    assert [r["trial"] for r in report.rows(study_min, "nll")][:3] == [0, 4, 2]


def test_plots_have_titles_and_log_axes_for_log_parameters(tmp_path):
    figs = report.figures(_study(), "top1")
    assert set(figs) == {"optimization_history", "intermediate_values", "param_importances",
                         "slice_schedule.base_lr", "slice_data.mixup_alpha", "slice_model.name"}
    for stem, fig in figs.items():
        ax = fig.axes[0]
        assert ax.get_title() and not ax.get_title(loc="left"), stem
    assert figs["slice_schedule.base_lr"].axes[0].get_xscale() == "log"
    assert figs["slice_data.mixup_alpha"].axes[0].get_xscale() == "linear"
    assert figs["slice_schedule.base_lr"].axes[0].get_ylabel() == "val/top1"
    for fig in figs.values():
        plt.close(fig)
    paths = report.write_plots(_study(), str(tmp_path), "top1")
    assert len(paths) == 6 and all(os.path.getsize(p) > 5000 for p in paths)
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_summary_names_the_best_trial():
    s = report.summary(_study(), "top1")
    assert s["best"]["trial"] == 2 and s["best"]["val/top1"] == 0.97
    assert s["trials"] == {"complete": 3, "pruned": 2, "fail": 1}
