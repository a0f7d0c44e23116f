"""jaxvision vs PyTorch CPU training, the same models and settings, measured in one run.

    python -m benchmarks.vs_torch [--models resnet50,efficientnet_b0,mobilenet_v2,vit_s16]
        [--dtypes float32,bfloat16] [--batch 16] [--res 224] [--steps 5] [--warmup 2]
        [--torch-python /path/to/torch/venv/bin/python] [--out FILE]

For every model and dtype, one process runs jaxvision's train step (``benchmarks.throughput``:
the library's step, donated state, SGD momentum 0.9, bf16 = bf16 compute with float32 parameters)
and one process runs the PyTorch peer (``benchmarks/peer_torch_train.py``: torchvision/timm model,
``torch.optim.SGD``, bf16 = ``torch.autocast``), one right after the other; the order alternates
from row to row so that a drifting machine load does not favour one side. Reported: median step
time and images/s of each, jaxvision / PyTorch, and each framework's bf16 / float32 speed-up.
The load average before and after every row is kept: on a shared machine wall times measure the
neighbours. torch is optional (``--torch-python`` names an interpreter that has it, e.g. a
separate environment; default ``$JAXVISION_TORCH_PYTHON``, else this one); without it the peer
column is empty.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER = os.path.join(ROOT, "benchmarks", "peer_torch_train.py")


def _last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return None


def _run(cmd: list[str], timeout: float) -> dict | None:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    if proc.returncode != 0:
        sys.stderr.write(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}\n")
        return None
    return _last_json(proc.stdout)


def jaxvision_row(model, dtype, a) -> dict | None:
    return _run([sys.executable, "-m", "benchmarks.throughput", "--model", model, "--batch",
                 str(a.batch), "--res", str(a.res), "--dtype", dtype, "--steps", str(a.steps),
                 "--warmup", str(a.warmup), "--no-infer", "--no-probe", "--json"], a.timeout)


def torch_row(model, dtype, a) -> dict | None:
    return _run([a.torch_python, PEER, "--model", model, "--batch", str(a.batch), "--res",
                 str(a.res), "--dtype", dtype, "--steps", str(a.steps), "--warmup",
                 str(a.warmup), "--json"], a.timeout)


def measure(a) -> list[dict]:
    rows = []
    for i, (model, dtype) in enumerate((m, d) for m in a.models for d in a.dtypes):
        load_before = os.getloadavg()[0]
        order = (jaxvision_row, torch_row) if i % 2 == 0 else (torch_row, jaxvision_row)
        got = {f.__name__: f(model, dtype, a) for f in order}
        jv, pt = got["jaxvision_row"], got["torch_row"]
        row = {"model": model, "dtype": dtype, "batch": a.batch, "res": a.res,
               "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
               "jaxvision_img_per_s": jv and jv["train_img_per_s"],
               "jaxvision_compile_s": jv and jv.get("compile_s"),
               "torch_img_per_s": pt and pt["train_img_per_s"],
               "torch": pt and pt["framework"]}
        if jv and pt:
            row["ratio"] = jv["train_img_per_s"] / pt["train_img_per_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def bf16_speedups(rows: list[dict]) -> dict:
    """{model: {framework: bf16 img/s / float32 img/s}}."""
    out = {}
    by = {(r["model"], r["dtype"]): r for r in rows}
    for model in {r["model"] for r in rows}:
        f32, b16 = by.get((model, "float32")), by.get((model, "bfloat16"))
        if f32 and b16:
            out[model] = {k: b16[f"{k}_img_per_s"] / f32[f"{k}_img_per_s"]
                          for k in ("jaxvision", "torch")
                          if b16[f"{k}_img_per_s"] and f32[f"{k}_img_per_s"]}
    return out


def _fmt(v) -> str:
    return f"{v:.2f}" if v else "-"


def table(rows: list[dict], speedups: dict) -> str:
    lines = ["| model | dtype | jaxvision img/s | PyTorch img/s | jaxvision / PyTorch | load |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['dtype']} | {_fmt(r['jaxvision_img_per_s'])} | "
                     f"{_fmt(r['torch_img_per_s'])} | {_fmt(r.get('ratio'))} | "
                     f"{r['load_before']}-{r['load_after']} |")
    for model, s in sorted(speedups.items()):
        parts = ", ".join(f"{k} {v:.2f}x" for k, v in s.items())
        lines.append(f"\nbf16 / float32, {model}: {parts}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="resnet50,efficientnet_b0,mobilenet_v2,vit_s16")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--res", type=int, default=224)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--timeout", type=float, default=1800, help="seconds per process")
    p.add_argument("--torch-python", default=os.environ.get("JAXVISION_TORCH_PYTHON",
                                                            sys.executable))
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    a.models, a.dtypes = a.models.split(","), a.dtypes.split(",")
    rows = measure(a)
    speedups = bf16_speedups(rows)
    print(table(rows, speedups))
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"rows": rows, "bf16_speedup": speedups}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
