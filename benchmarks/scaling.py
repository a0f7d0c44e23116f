"""parallel=jit vs parallel=pmap on 1, 2, 4 and 8 devices at the same global batch.

    python -m benchmarks.scaling [--model resnet18] [--batch 32] [--res 32] [--steps 3]
        [--devices 1,2,4,8] [--out FILE]

For each path and device count: the train step's time (median, ``block_until_ready``), images/s,
per-device peak memory (``compiled.memory_analysis()``), and whether one step from the same
initial state gives the same result as ``jit`` on one device (max |difference| of the updated
parameters and of the loss). Both paths run the library's own step (``jaxvision.training``).

On a CPU the devices are simulated (``--xla_force_host_platform_device_count``): every "device"
shares the same cores, so this measures the overhead of partitioning and collectives, not a
speed-up. On a GPU/TPU host with N real devices it measures scaling.
"""

from __future__ import annotations

import argparse
import json
import os

from benchmarks.throughput import configure_xla

CPU_NOTE = (
    "NOTE: CPU devices here are simulated and share the host's cores; the table measures the "
    "overhead of partitioning and collectives, not a speed-up."
)


def run(args) -> dict:
    import jax
    import numpy as np

    from benchmarks.throughput import benchmark, machine_info

    counts = [int(n) for n in args.devices.split(",")]
    if max(counts) > jax.device_count():
        raise SystemExit(f"need {max(counts)} devices, jax sees {jax.device_count()}")
    reference = None
    rows = []
    for parallel in ("jit", "pmap"):
        for n in counts:
            r = benchmark(
                args.model, args.batch, args.res, parallel=parallel, devices=n,
                steps=args.steps, warmup=args.warmup, infer=False, probe=False,
                return_state=True,
            )
            params = r.pop("_state").params
            loss = r.pop("_loss")
            if reference is None:
                reference = (params, loss)
            diffs = jax.tree.map(
                lambda a, b: float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b)))),
                params, reference[0],
            )
            max_diff = max(jax.tree.leaves(diffs))
            scale = max(float(np.max(np.abs(np.asarray(x)))) for x in jax.tree.leaves(params))
            row = {
                "parallel": parallel,
                "devices": n,
                "train_step_s": r["train_step_s"],
                "train_img_per_s": r["train_img_per_s"],
                "compile_s": r["compile_s"],
                "peak_bytes_per_device": r["peak_bytes"],
                "loss_first_step": loss,
                "max_abs_param_diff_vs_jit1": max_diff,
                "equal": bool(max_diff <= args.tol * max(scale, 1.0)
                              and abs(loss - reference[1]) <= args.tol * max(abs(loss), 1.0)),
            }
            rows.append(row)
            print(format_row(row), flush=True)
    info = machine_info()
    return {"kind": "scaling", "model": args.model, "batch": args.batch, "res": args.res,
            "steps": args.steps, "tol": args.tol, "rows": rows, "note": CPU_NOTE
            if info["platform"] == "cpu" else "", **info}


HEADER = (f"{'parallel':8s} {'devices':>7s} {'step ms':>9s} {'img/s':>9s} {'compile s':>9s} "
          f"{'MiB/device':>10s} {'loss':>9s} {'max|dparam|':>11s}  equal")


def format_row(row) -> str:
    return (
        f"{row['parallel']:8s} {row['devices']:7d} {row['train_step_s'] * 1e3:9.1f} "
        f"{row['train_img_per_s']:9.1f} {row['compile_s']:9.1f} "
        f"{row['peak_bytes_per_device'] / 2**20:10.2f} {row['loss_first_step']:9.5f} "
        f"{row['max_abs_param_diff_vs_jit1']:11.2e}  {'yes' if row['equal'] else 'NO'}"
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet18")
    p.add_argument("--batch", type=int, default=32, help="global batch (divisible by 8)")
    p.add_argument("--res", type=int, default=32)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--devices", default="1,2,4,8")
    p.add_argument("--tol", type=float, default=1e-4, help="relative tolerance for 'equal'")
    p.add_argument("--xla-flags", default="")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    configure_xla(max(int(n) for n in args.devices.split(",")), args.xla_flags)
    import jax

    print(f"{args.model}, global batch {args.batch}, {args.res} px, "
          f"{jax.devices()[0].platform} x{jax.device_count()}")
    if jax.default_backend() == "cpu":
        print(CPU_NOTE)
    print(HEADER)
    result = run(args)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = args.out or os.path.join(root, "benchmarks", "results", f"scaling_{args.model}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
