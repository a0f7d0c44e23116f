"""Grid or random hyper-parameter search over any config keys, one training run per point.

    python -m experiments.sweep --config configs/mnist5k_lenet.py --workdir DIR \
        --sweep 'schedule.base_lr=[0.1,0.03,0.01]' --sweep 'model.name=[lenet5,alexnet]' \
        [--random N [--seed S]] [--metric top1] [--rank best|last] [--set key=value ...]

Each point trains in ``DIR/<point-name>/`` with ``python -m jaxvision.train`` (a subprocess, so a
crash or a leak cannot take the sweep down; ``--in-process`` calls the library instead). A point
whose ``sweep_result.json`` exists is finished and not rerun, so an interrupted sweep is resumed
by running the same command again (an unfinished point also resumes from its own checkpoints).
Results: ``DIR/results.csv`` and ``DIR/results.md`` (best first) and ``DIR/<metric>_vs_<key>.png``
for each swept key.

Sweep values are Python literals (``[0.1, 0.01]``, ``[(224, 224)]``); bare words are strings
(``[lenet5, resnet18]``). With ``--random N``, ``key=loguniform(1e-4,1e-1)``,
``key=uniform(0,0.3)`` and ``key=choice(a,b)`` are sampled; lists are sampled uniformly.
"""

from __future__ import annotations

import argparse
import ast
import csv
import itertools
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

RESULT_FILE = "sweep_result.json"
_SPEC = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.+?)\s*$", re.S)
_DIST = re.compile(r"^(loguniform|uniform|choice)\((.*)\)$", re.S)


# ---- parsing -----------------------------------------------------------------------------------
def _literal(text: str) -> Any:
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word: a string


def _split_items(body: str) -> list[str]:
    """Split 'a, (1, 2), [3, 4]' at top-level commas."""
    items, depth, cur = [], 0, []
    for ch in body:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        items.append("".join(cur))
    return [i.strip() for i in items if i.strip()]


def parse_sweep(spec: str) -> tuple[str, Any]:
    """'key=[v1,v2]' -> (key, [v1, v2]); 'key=loguniform(a,b)' -> (key, ('loguniform', a, b))."""
    m = _SPEC.match(spec)
    if not m:
        raise ValueError(
            f"--sweep {spec!r}: expected KEY=[v1,v2,...] (e.g. 'schedule.base_lr=[0.1,0.01]')"
        )
    key, body = m.group(1), m.group(2)
    d = _DIST.match(body)
    if d:
        kind, args = d.group(1), [_literal(a) for a in _split_items(d.group(2))]
        if kind == "choice":
            return key, list(args)
        if len(args) != 2 or not all(isinstance(a, int | float) for a in args):
            raise ValueError(f"--sweep {spec!r}: {kind}(low, high) takes two numbers")
        if kind == "loguniform" and min(args) <= 0:
            raise ValueError(f"--sweep {spec!r}: loguniform bounds must be > 0")
        return key, (kind, float(args[0]), float(args[1]))
    if not (body.startswith("[") and body.endswith("]")):
        return key, [_literal(body)]  # a single value
    values = [_literal(v) for v in _split_items(body[1:-1])]
    if not values:
        raise ValueError(f"--sweep {spec!r}: empty value list")
    return key, values


def grid_points(sweeps: Sequence[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Cartesian product of the value lists, in the order given (last key varies fastest)."""
    for key, values in sweeps:
        if not isinstance(values, list):
            raise ValueError(f"{key}: distributions ({values[0]}) need --random N")
    keys = [k for k, _ in sweeps]
    return [
        dict(zip(keys, combo, strict=True)) for combo in itertools.product(*[v for _, v in sweeps])
    ]


def random_points(sweeps: Sequence[tuple[str, Any]], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` points sampled independently per key (lists uniformly, distributions by their law);
    with lists only, distinct points are drawn without replacement (at most the grid size)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if all(isinstance(v, list) for _, v in sweeps):
        grid = grid_points(sweeps)
        order = rng.permutation(len(grid))[: min(n, len(grid))]
        return [grid[i] for i in order]
    points = []
    for _ in range(n):
        p = {}
        for key, v in sweeps:
            if isinstance(v, list):
                p[key] = v[int(rng.integers(len(v)))]
            elif v[0] == "uniform":
                p[key] = float(rng.uniform(v[1], v[2]))
            else:
                p[key] = float(math.exp(rng.uniform(math.log(v[1]), math.log(v[2]))))
        points.append(p)
    return points


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        return "x".join(_fmt(x) for x in v)
    return str(v)


def point_name(point: dict[str, Any]) -> str:
    """Folder name of a point: 'base_lr=0.1,name=lenet5' made file-system safe."""
    short = [k.rsplit(".", 1)[-1] for k in point]
    keys = short if len(set(short)) == len(short) else list(point)
    parts = [f"{k}={_fmt(v)}" for k, v in zip(keys, point.values(), strict=True)]
    return re.sub(r"[^A-Za-z0-9_.=,+-]+", "_", ",".join(parts)) or "default"


# ---- running -----------------------------------------------------------------------------------
def _cli_value(v: Any) -> str:
    return str(v) if not isinstance(v, list) else str(tuple(v))


def run_subprocess(config: str, workdir: str, overrides: dict[str, Any]) -> None:
    """Train one point with ``python -m jaxvision.train``; its output goes to workdir/train.log."""
    cmd = [sys.executable, "-m", "jaxvision.train", f"--config={config}", f"--workdir={workdir}"]
    cmd += [f"--config.{k}={_cli_value(v)}" for k, v in overrides.items()]
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "train.log"), "a") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    if rc != 0:
        raise RuntimeError(
            f"training exited with status {rc}; see {os.path.join(workdir, 'train.log')}"
        )


def load_config(config: str):
    """The recipe's ConfigDict (``path`` or ``path:arg``)."""
    import importlib.util

    path, _, arg = config.partition(":")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} not found (e.g. configs/mnist5k_lenet.py)")
    spec = importlib.util.spec_from_file_location("jaxvision_sweep_recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def apply_overrides(cfg, overrides: dict[str, Any]):
    """Set dotted keys on a (locked) ConfigDict; unknown keys raise a ValueError naming them."""
    from jaxvision import config as config_lib

    known = set(config_lib.all_keys(cfg))
    for key, value in overrides.items():
        if key not in known:
            raise ValueError(config_lib.unknown_key_message(cfg, key))
        *parents, leaf = key.split(".")
        node = cfg
        for p in parents:
            node = node[p]
        with node.ignore_type():
            node[leaf] = tuple(value) if isinstance(value, list) else value
    return cfg


def run_in_process(config: str, workdir: str, overrides: dict[str, Any]) -> None:
    """Train one point by calling ``jaxvision.training.loop.train_and_evaluate``."""
    from jaxvision.training import loop

    cfg = apply_overrides(load_config(config), overrides)
    loop.train_and_evaluate(cfg, workdir)


def read_metrics(workdir: str, metric: str, mode: str) -> dict[str, float]:
    """Final and best value of ``val/<metric>`` (and the last of every other scalar) from
    metrics.jsonl."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: the training run wrote no metrics")
    last: dict[str, float] = {}
    history: list[float] = []
    key = metric if "/" in metric else f"val/{metric}"
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            last.update({k: v for k, v in rec.items() if isinstance(v, int | float)})
            if key in rec:
                history.append(float(rec[key]))
    if not history:
        raise ValueError(
            f"{path} has no {key!r}; is the metric evaluated (eval split, eval_every_steps)?"
        )
    best = min(history) if mode == "min" else max(history)
    return {**last, f"last/{metric}": history[-1], f"best/{metric}": best}


def run_sweep(
    config: str,
    workdir: str,
    sweeps: Sequence[tuple[str, Any]],
    *,
    random: int | None = None,
    seed: int = 0,
    metric: str = "top1",
    rank: str = "best",
    fixed: dict[str, Any] | None = None,
    runner: Callable[[str, str, dict[str, Any]], None] = run_subprocess,
    plot: bool = True,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run every point not finished yet, then write the results table and plots.

    Returns the rows (one per point, best first): {'point', 'status', swept keys..., metrics...}.
    """
    from jaxvision import config as config_lib

    if rank not in ("best", "last"):
        raise ValueError(f"rank must be 'best' or 'last', got {rank!r}")
    if not sweeps:
        raise ValueError("nothing to sweep: give at least one --sweep KEY=[v1,v2]")
    fixed = dict(fixed or {})
    base = load_config(config)
    known = set(config_lib.all_keys(base))
    for key in [k for k, _ in sweeps] + list(fixed):
        if key not in known:
            raise ValueError(config_lib.unknown_key_message(base, key))
    mode = config_lib.metric_mode(metric)
    points = random_points(sweeps, random, seed) if random else grid_points(sweeps)
    os.makedirs(workdir, exist_ok=True)
    rows = []
    for i, point in enumerate(points):
        name = point_name(point)
        point_dir = os.path.join(workdir, name)
        result_path = os.path.join(point_dir, RESULT_FILE)
        if os.path.exists(result_path):
            with open(result_path) as f:
                result = json.load(f)
            log(f"[{i + 1}/{len(points)}] {name}: finished before, not rerun")
        else:
            log(f"[{i + 1}/{len(points)}] {name}: training in {point_dir}")
            t0 = time.time()
            try:
                runner(config, point_dir, {**fixed, **point})
                result = {
                    "point": point,
                    "status": "ok",
                    "seconds": round(time.time() - t0, 1),
                    "metrics": read_metrics(point_dir, metric, mode),
                }
                with open(result_path, "w") as f:
                    json.dump(result, f, indent=2)
            except Exception as e:  # noqa: BLE001 - one failed point must not end the sweep
                log(f"  failed: {e}")
                result = {"point": point, "status": f"failed: {e}"[:200], "metrics": {}}
        row = {"point": name, "status": result["status"], **point}
        row[metric] = result["metrics"].get(f"{rank}/{metric}", math.nan)
        row[f"last_{metric}"] = result["metrics"].get(f"last/{metric}", math.nan)
        row["seconds"] = result.get("seconds", math.nan)
        rows.append(row)

    def sort_key(r):
        v = r[metric]
        return (math.isnan(v), -v if mode == "max" else v)

    rows.sort(key=sort_key)
    write_tables(rows, workdir, [k for k, _ in sweeps], metric)
    if plot:
        plot_results(rows, workdir, [k for k, _ in sweeps], metric)
    if rows and not math.isnan(rows[0][metric]):
        log(f"best: {rows[0]['point']} {metric}={rows[0][metric]:.4f}")
    return rows


def write_tables(rows: list[dict], workdir: str, keys: list[str], metric: str) -> None:
    columns = ["rank", "point", *keys, metric, f"last_{metric}", "seconds", "status"]
    with open(os.path.join(workdir, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for i, r in enumerate(rows, 1):
            w.writerow([i, *[r.get(c, "") for c in columns[1:]]])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for i, r in enumerate(rows, 1):
        cells = [str(i)] + [
            f"{r[c]:.4f}" if c in (metric, f"last_{metric}") else _fmt(r.get(c, ""))
            for c in columns[1:]
        ]
        lines.append("| " + " | ".join(cells) + " |")
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def plot_results(rows: list[dict], workdir: str, keys: list[str], metric: str) -> list[str]:
    """One PNG per swept key: the metric of every point against that key's value."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    paths = []
    ok = [r for r in rows if not math.isnan(r[metric])]
    for key in keys:
        fig = Figure(figsize=(5, 3.5), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        values = [r[key] for r in ok]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if numeric:
            ax.scatter(values, [r[metric] for r in ok])
            if values and min(values) > 0 and max(values) / min(values) >= 20:
                ax.set_xscale("log")
        else:
            cats = sorted({_fmt(v) for v in values})
            ax.scatter([cats.index(_fmt(v)) for v in values], [r[metric] for r in ok])
            ax.set_xticks(range(len(cats)), cats, rotation=30, ha="right")
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = os.path.join(workdir, f"{metric.replace('/', '_')}_vs_{key}.png")
        fig.savefig(path)
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.sweep", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--config", required=True, help="recipe, e.g. configs/mnist5k_lenet.py[:arg]"
    )
    parser.add_argument("--workdir", required=True, help="sweep folder (one sub-folder per point)")
    parser.add_argument(
        "--sweep", action="append", default=[], metavar="KEY=[V1,V2]", help="repeatable"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fixed override for every point (repeatable), e.g. total_steps=500",
    )
    parser.add_argument(
        "--random", type=int, default=None, metavar="N", help="random search: N points"
    )
    parser.add_argument("--seed", type=int, default=0, help="random-search seed")
    parser.add_argument("--metric", default="top1", help="validation metric to rank by")
    parser.add_argument(
        "--rank",
        default="best",
        choices=("best", "last"),
        help="rank by the best or the last evaluation of each run",
    )
    parser.add_argument(
        "--in-process", action="store_true", help="train in this process (no subprocess)"
    )
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    try:
        sweeps = [parse_sweep(s) for s in args.sweep]
        fixed = dict(parse_sweep(s) for s in args.set)
        fixed = {k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in fixed.items()}
        rows = run_sweep(
            args.config,
            args.workdir,
            sweeps,
            random=args.random,
            seed=args.seed,
            metric=args.metric,
            rank=args.rank,
            fixed=fixed,
            runner=run_in_process if args.in_process else run_subprocess,
            plot=not args.no_plot,
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with open(os.path.join(args.workdir, "results.md")) as f:
        print(f.read())
    return 0 if any(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
