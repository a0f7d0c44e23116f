"""Rematerialization: activation memory vs step time of the train step, per policy.

    python -m benchmarks.remat [--models vit_s16,resnet50] [--batch 8] [--res 224]
        [--policies none,full,dots_saveable] [--steps 3] [--warmup 1] [--out FILE]

For every model and policy (``config.remat``, ``jaxvision.layers.remat``) this runs
``benchmarks.throughput.benchmark`` (the library's own train step, compiled once, donated state)
with ``model_overrides={'remat': policy}`` and reports, from the same process:

* ``temp MiB``: ``compiled.memory_analysis().temp_size_in_bytes`` of the train step: the
  temporaries, where the activations kept for the backward pass live;
* ``peak MiB``: arguments + outputs - donated aliases + temporaries (``throughput._peak_bytes``);
* ``step s``: median wall time of one train step; ``vs none``: its ratio to no remat.

float32, one device. The rows alternate models, not policies, so a changing machine load
spreads over all policies alike; the memory columns do not depend on the load.
"""

from __future__ import annotations

import argparse
import json
import os

from benchmarks import throughput

POLICIES = ("none", "full", "dots_saveable")


def measure(model: str, policy: str, *, batch: int, res: int, steps: int, warmup: int) -> dict:
    """One row: throughput.benchmark's result for ``model`` under ``policy`` (flat dict)."""
    r = throughput.benchmark(model, batch, res, steps=steps, warmup=warmup, infer=False,
                             probe=False, model_overrides={"remat": policy})
    return {"model": model, "policy": policy, "batch": batch, "res": res,
            "temp_bytes": r["mem_temp_bytes"], "peak_bytes": r["peak_bytes"],
            "train_step_s": r["train_step_s"], "compile_s": r["compile_s"]}


def table(rows: list[dict]) -> str:
    """Markdown table of ``rows`` (``step s`` also as a ratio to the model's 'none' row)."""
    base = {r["model"]: r["train_step_s"] for r in rows if r["policy"] == "none"}
    lines = ["| model | remat | temp MiB | peak MiB | step s | vs none | compile s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["train_step_s"] / base[r["model"]] if r["model"] in base else float("nan")
        lines.append(f"| {r['model']} | {r['policy']} | {r['temp_bytes'] / 2**20:.0f} | "
                     f"{r['peak_bytes'] / 2**20:.0f} | {r['train_step_s']:.2f} | {ratio:.2f}x | "
                     f"{r['compile_s']:.1f} |")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="vit_s16,resnet50")
    p.add_argument("--policies", default=",".join(POLICIES))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--res", type=int, default=224)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--out", default=None, help="JSON file for benchmarks.make_readme")
    args = p.parse_args(argv)
    bad = [x for x in args.policies.split(",") if x not in POLICIES]
    if bad:
        p.error(f"--policies: {', '.join(bad)} not in {', '.join(POLICIES)}")
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    throughput.configure_xla()
    rows = []
    for policy in args.policies.split(","):
        for model in args.models.split(","):
            rows.append(measure(model, policy, batch=args.batch, res=args.res, steps=args.steps,
                                warmup=args.warmup))
            print(f"{model} {policy}: temp {rows[-1]['temp_bytes'] / 2**20:.0f} MiB, step "
                  f"{rows[-1]['train_step_s']:.2f} s", flush=True)
    rows.sort(key=lambda r: (r["model"], POLICIES.index(r["policy"])))
    print(table(rows))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"rows": rows, **throughput.machine_info()}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
