"""XLA:CPU's own options, measured on float32 training steps: oneDNN for dots, fast math, the
concurrency-optimized scheduler. Each setting runs ``benchmarks.throughput`` in a fresh process
(XLA reads ``XLA_FLAGS`` once) and the table reports process CPU seconds per step (all threads;
the shared machine's wall times swing with load) and the wall time beside it.

    PYTHONPATH=. python experiments/onednn_study/run.py [--models mobilenet_v2,resnet50]
        [--settings default,onednn_dot,...] [--batch 16] [--steps 3] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

SETTINGS = {
    "default": "",
    # dots (and the 1x1 / patchify convolutions jaxvision lowers to dots) on oneDNN's matmul
    # instead of YNNPACK's; oneDNN takes no convolutions in this jaxlib (types: dot, eltwise,
    # reduce)
    "onednn_dot": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=dot",
    "onednn_dot_eltwise": ("--xla_cpu_use_onednn=true "
                           "--xla_cpu_experimental_onednn_fusion_type=dot,eltwise"),
    "fast_math": "--xla_cpu_enable_fast_math=true",
    "concurrency_scheduler": "--xla_cpu_enable_concurrency_optimized_scheduler=true",
}


def measure(model: str, setting: str, batch: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.json")
        cmd = [sys.executable, "-m", "benchmarks.throughput", "--model", model, "--batch",
               str(batch), "--steps", str(steps), "--warmup", "1", "--no-infer", "--no-probe",
               "--out", out]
        if SETTINGS[setting]:
            cmd.append(f"--xla-flags={SETTINGS[setting]}")  # '=': the value starts with '--'
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return {"model": model, "setting": setting, "error": proc.stderr[-800:]}
        with open(out) as f:
            r = json.load(f)
    return {"model": model, "setting": setting, "cpu_s_per_step": r["train_step_cpu_s"],
            "wall_s_per_step": r["train_step_s"], "final_loss": r["final_loss"],
            "load": r["loadavg"][0]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="mobilenet_v2,resnet50")
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    rows = []
    for model in args.models.split(","):
        for setting in args.settings.split(","):
            rows.append(measure(model, setting, args.batch, args.steps))
            print(json.dumps(rows[-1]), flush=True)
            if args.out:
                with open(args.out, "w") as f:
                    json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
