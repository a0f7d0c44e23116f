"""Rematerialization: activation memory vs step time of the train step, per policy.

    python -m benchmarks.remat [--models vit_s16,resnet50] [--batch 8] [--res 224]
        [--policies none,full,dots_saveable] [--steps 3] [--warmup 1] [--out FILE] [--saved_only]

For every model and policy (``config.remat``, ``jaxvision.layers.remat``) this runs
``benchmarks.throughput.benchmark`` (the library's own train step, compiled once, donated state)
with ``model_overrides={'remat': policy}`` and reports, from the same process:

* ``saved MiB``: the residuals the forward pass keeps for the backward pass (the leaves of
  ``jax.vjp``'s backward function, sized abstractly with ``jax.eval_shape``: no compute, and the
  same on every backend): what rematerialization is for;
* ``temp MiB``: ``compiled.memory_analysis().temp_size_in_bytes`` of the train step: the
  temporaries as this backend's compiler schedules them (XLA:CPU does not turn the smaller
  residuals into a smaller buffer assignment);
* ``peak MiB``: arguments + outputs - donated aliases + temporaries (``throughput._peak_bytes``);
* ``step s``: median wall time of one train step; ``vs none``: its ratio to no remat.

float32, one device. The rows alternate models, not policies, so a changing machine load
spreads over all policies alike; the memory columns do not depend on the load. ``--saved_only``
computes only ``saved MiB`` (seconds) and merges it into the rows of an existing ``--out`` file.
"""

from __future__ import annotations

import argparse
import json
import os

from benchmarks import throughput

POLICIES = ("none", "full", "dots_saveable")


def saved_bytes(model_name: str, policy: str, *, batch: int, res: int, **overrides) -> int:
    """Bytes of the residuals one training forward pass keeps for its backward pass (abstract);
    ``overrides`` go to ``models.create`` (e.g. a tiny architecture)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxvision import models

    model = models.create(model_name, remat=policy, **overrides)
    x = jax.ShapeDtypeStruct(models.input_shape(model_name, res, batch), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    rngs = {"dropout": jax.random.key(1), "drop_path": jax.random.key(2)}

    def backward_fn(variables, x):
        def loss(params):
            logits, _ = model.apply({**variables, "params": params}, x, train=True, rngs=rngs,
                                    mutable=["batch_stats"])
            return jnp.sum(logits.astype(jnp.float32))

        return jax.vjp(loss, variables["params"])[1]

    residuals = jax.eval_shape(backward_fn, variables, x)
    return int(sum(np.prod(r.shape) * r.dtype.itemsize for r in jax.tree.leaves(residuals)))


def measure(model: str, policy: str, *, batch: int, res: int, steps: int, warmup: int) -> dict:
    """One row: throughput.benchmark's result for ``model`` under ``policy`` (flat dict)."""
    r = throughput.benchmark(model, batch, res, steps=steps, warmup=warmup, infer=False,
                             probe=False, model_overrides={"remat": policy})
    return {"model": model, "policy": policy, "batch": batch, "res": res,
            "saved_bytes": saved_bytes(model, policy, batch=batch, res=res),
            "temp_bytes": r["mem_temp_bytes"], "peak_bytes": r["peak_bytes"],
            "train_step_s": r["train_step_s"], "compile_s": r["compile_s"]}


def table(rows: list[dict]) -> str:
    """Markdown table of ``rows`` (``step s`` also as a ratio to the model's 'none' row)."""
    base = {r["model"]: r["train_step_s"] for r in rows if r["policy"] == "none"}
    lines = ["| model | remat | saved MiB | temp MiB | peak MiB | step s | vs none | compile s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = r["train_step_s"] / base[r["model"]] if r["model"] in base else float("nan")
        saved = f"{r['saved_bytes'] / 2**20:.0f}" if "saved_bytes" in r else "n/a"
        lines.append(f"| {r['model']} | {r['policy']} | {saved} | {r['temp_bytes'] / 2**20:.0f} | "
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
    p.add_argument("--saved_only", action="store_true",
                   help="only 'saved MiB', merged into the existing rows of --out")
    args = p.parse_args(argv)
    bad = [x for x in args.policies.split(",") if x not in POLICIES]
    if bad:
        p.error(f"--policies: {', '.join(bad)} not in {', '.join(POLICIES)}")
    if args.saved_only and not (args.out and os.path.exists(args.out)):
        p.error("--saved_only needs --out naming an existing results file")
    return args


def add_saved_bytes(path: str) -> list[dict]:
    """Fills ``saved_bytes`` into every row of the results file ``path`` (rewritten)."""
    with open(path) as f:
        result = json.load(f)
    for r in result["rows"]:
        r["saved_bytes"] = saved_bytes(r["model"], r["policy"], batch=r["batch"], res=r["res"])
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    return result["rows"]


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    throughput.configure_xla()
    if args.saved_only:
        rows = add_saved_bytes(args.out)
        print(table(rows))
        return rows
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
