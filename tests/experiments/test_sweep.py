import csv
import json
import os

import pytest

from experiments import sweep

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "mnist5k_lenet.py")


def test_parse_grid_random_and_names():
    assert sweep.parse_sweep("schedule.base_lr=[0.1, 0.03,1e-2]") == (
        "schedule.base_lr",
        [0.1, 0.03, 0.01],
    )
    assert sweep.parse_sweep("model.name=[lenet5, resnet18]") == (
        "model.name",
        ["lenet5", "resnet18"],
    )
    assert sweep.parse_sweep("data.image_size=[(32, 32), 28]")[1] == [(32, 32), 28]
    assert sweep.parse_sweep("x.lr=loguniform(1e-4, 1e-1)") == ("x.lr", ("loguniform", 1e-4, 0.1))
    with pytest.raises(ValueError, match="KEY="):
        sweep.parse_sweep("no equals sign")
    grid = sweep.grid_points([("a", [1, 2]), ("b", ["x", "y", "z"])])
    assert len(grid) == 6 and grid[0] == {"a": 1, "b": "x"} and grid[-1] == {"a": 2, "b": "z"}
    rnd = sweep.random_points([("a", [1, 2]), ("b", ["x", "y", "z"])], 4, seed=1)
    assert (
        len(rnd) == 4 and len({tuple(p.values()) for p in rnd}) == 4 and all(p in grid for p in rnd)
    )
    lr = sweep.random_points([("lr", ("loguniform", 1e-4, 1e-1))], 50, seed=0)
    assert all(1e-4 <= p["lr"] <= 1e-1 for p in lr) and min(p["lr"] for p in lr) < 1e-3
    names = {sweep.point_name(p) for p in grid}
    assert len(names) == 6 and "a=1,b=x" in names
    assert (
        sweep.point_name({"schedule.base_lr": 0.1, "optimizer.base_lr": 0.2}).count("base_lr") == 2
    )


def test_unknown_key_is_reported_before_training(tmp_path):
    with pytest.raises(ValueError, match="schedule.base_lr"):
        sweep.run_sweep(CONFIG, str(tmp_path), [("schedule.base_lrr", [0.1])], runner=None)


@pytest.mark.slow
def test_two_point_sweep_runs_resumes_and_ranks(tmp_path):
    fixed = {
        "total_steps": 12,
        "eval_every_steps": 12,
        "checkpoint_every_steps": 12,
        "progress_bar": False,
        "schedule.warmup_steps": 0,
        "batch_size": 64,
    }
    sweeps = [("schedule.base_lr", [1e-7, 3e-3])]
    calls = []

    def runner(config, workdir, overrides):
        calls.append(overrides)
        sweep.run_in_process(config, workdir, overrides)

    rows = sweep.run_sweep(
        CONFIG, str(tmp_path), sweeps, fixed=fixed, runner=runner, log=lambda s: None
    )
    assert len(calls) == 2 and all(c["total_steps"] == 12 for c in calls)
    # Independent reading of each run's own log: the best point must come first.
    finals = {}
    for r in rows:
        with open(tmp_path / r["point"] / "metrics.jsonl") as f:
            finals[r["point"]] = [json.loads(x)["val/top1"] for x in f if "val/top1" in x][-1]
        assert r["status"] == "ok" and r["top1"] == pytest.approx(finals[r["point"]])
    assert rows[0]["top1"] == max(finals.values()) > rows[1]["top1"]
    assert rows[0]["schedule.base_lr"] == 3e-3  # 12 steps at lr 1e-7 learn nothing
    with open(tmp_path / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [t["point"] for t in table] == [r["point"] for r in rows] and table[0]["rank"] == "1"
    assert (tmp_path / "results.md").read_text().count("\n") == 4
    assert (tmp_path / "top1_vs_schedule.base_lr.png").stat().st_size > 1000

    def must_not_run(*a):
        raise AssertionError("a finished point was trained again")

    again = sweep.run_sweep(
        CONFIG, str(tmp_path), sweeps, fixed=fixed, runner=must_not_run, log=lambda s: None
    )
    assert [(r["point"], r["top1"]) for r in again] == [(r["point"], r["top1"]) for r in rows]
