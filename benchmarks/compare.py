"""jaxvision vs Keras 3 (JAX backend) on the same model, batch, resolution and optimizer.

    python -m benchmarks.compare [--models resnet50,efficientnet_b0,mobilenet_v2] [--batch 16]
        [--res 224] [--steps 3] [--warmup 1] [--dtype float32] [--xla-flags "..."] [--out FILE]

Each side runs in its own subprocess (so XLA flags, the Keras backend and memory do not mix), one
model after the other, jaxvision first. Both train with SGD (lr 0.1, momentum 0.9) on softmax
cross-entropy from logits, on random images and labels, with 1000 classes:

* jaxvision: ``python -m benchmarks.throughput --json`` (the library's train step, donated state);
* Keras: ``keras.applications.<Model>(weights=None, classifier_activation=None)`` compiled with
  ``keras.optimizers.SGD(0.1, momentum=0.9)`` and ``SparseCategoricalCrossentropy(from_logits=True)``
  (Keras' JAX trainer jit-compiles the step); each step is ``model.train_on_batch`` (returns host
  numbers, so every step is synchronised, as ``block_until_ready`` does on the jaxvision side).

Keras is an optional dependency: ``pip install jaxvision[bench]``. MFU for Keras is computed from
the FLOPs XLA counts in jaxvision's step for the same architecture (the models are the same
networks), against the matmul probe of jaxvision's run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# jaxvision name -> keras.applications class name (None: no Keras counterpart).
KERAS_NAMES = {
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
    "resnet152": "ResNet152",
    "efficientnet_b0": "EfficientNetB0",
    "efficientnet_b1": "EfficientNetB1",
    "mobilenet_v2": "MobileNetV2",
    "vgg16": "VGG16",
    "vgg19": "VGG19",
    "densenet121": "DenseNet121",
    "vit_s16": None,
}

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def keras_worker(args) -> dict:
    """Runs in a fresh process: times Keras' own training step."""
    os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported
    import jax
    import keras
    import numpy as np

    cls_name = KERAS_NAMES.get(args.model)
    if cls_name is None:
        raise SystemExit(f"keras.applications has no counterpart of {args.model!r}")
    if args.dtype != "float32":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    cls = getattr(keras.applications, cls_name)
    model = cls(
        weights=None,
        input_shape=(args.res, args.res, 3),
        classes=1000,
        classifier_activation=None,
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, args.res, args.res, 3), dtype=np.float32)
    y = rng.integers(0, 1000, (args.batch,)).astype(np.int32)
    t0 = time.perf_counter()
    model.train_on_batch(x, y)  # traces, compiles and runs one step
    first = time.perf_counter() - t0
    for _ in range(max(args.warmup - 1, 0)):
        model.train_on_batch(x, y)
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    return {
        "framework": "keras-jax",
        "keras": keras.__version__,
        "jax": jax.__version__,
        "model": args.model,
        "keras_model": cls_name,
        "params": int(sum(int(np.prod(w.shape)) for w in model.trainable_weights)),
        "batch": args.batch,
        "res": args.res,
        "dtype": args.dtype,
        "steps": args.steps,
        "warmup": args.warmup,
        "train_step_s": step,
        "train_step_s_all": times,
        "train_img_per_s": args.batch / step,
        # The first call = trace + compile + one step; the step's share is taken off.
        "compile_s": max(first - step, 0.0),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def _run(cmd, env) -> tuple[dict | None, str]:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line), ""
    return None, (proc.stderr or proc.stdout)[-1500:]


def compare(args) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    if args.xla_flags:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
    rows = []
    for name in args.models.split(","):
        row = {"model": name}
        jv_cmd = [sys.executable, "-m", "benchmarks.throughput", "--model", name,
                  "--batch", str(args.batch), "--res", str(args.res), "--dtype", args.dtype,
                  "--steps", str(args.steps), "--warmup", str(args.warmup), "--no-infer", "--json"]
        if args.matmul_precision:
            jv_cmd += ["--matmul-precision", args.matmul_precision]
        jv, err = _run(jv_cmd, env)
        if jv is None:
            print(f"[{name}] jaxvision failed:\n{err}", file=sys.stderr)
        row["jaxvision"] = jv
        if KERAS_NAMES.get(name) and not args.no_keras:
            kcmd = [sys.executable, "-m", "benchmarks.compare", "--keras-worker", "--model", name,
                    "--batch", str(args.batch), "--res", str(args.res), "--dtype", args.dtype,
                    "--steps", str(args.steps), "--warmup", str(args.warmup)]
            kr, err = _run(kcmd, dict(env, KERAS_BACKEND="jax"))
            if kr is None:
                print(f"[{name}] keras failed:\n{err}", file=sys.stderr)
            elif jv is not None:
                kr["flops_per_img"] = jv["flops_per_img"]
                peak = jv["peak_flops_bf16" if args.dtype == "bfloat16" else "peak_flops_f32"]
                kr["mfu"] = kr["train_img_per_s"] * jv["flops_per_img"] / peak
            row["keras"] = kr
        else:
            row["keras"] = None
        if row["jaxvision"] and row["keras"]:
            row["ratio"] = row["jaxvision"]["train_img_per_s"] / row["keras"]["train_img_per_s"]
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


def _f(x, fmt):
    return format(x, fmt) if x is not None else "n/a"


HEADER = (
    f"{'model':16s} {'jaxvision img/s':>15s} {'compile s':>9s} {'MFU':>6s} | "
    f"{'Keras img/s':>11s} {'compile s':>9s} {'MFU':>6s} | {'jv/Keras':>8s}"
)


def format_row(row) -> str:
    jv, kr = row.get("jaxvision") or {}, row.get("keras") or {}
    return (
        f"{row['model']:16s} {_f(jv.get('train_img_per_s'), '15.2f')} "
        f"{_f(jv.get('compile_s'), '9.1f')} {_f(jv.get('mfu') and 100 * jv['mfu'], '5.1f')}% | "
        f"{_f(kr.get('train_img_per_s'), '11.2f')} {_f(kr.get('compile_s'), '9.1f')} "
        f"{_f(kr.get('mfu') and 100 * kr['mfu'], '5.1f')}% | {_f(row.get('ratio'), '7.2f')}x"
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet50,efficientnet_b0,mobilenet_v2")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--res", type=int, default=224)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--xla-flags", default="", help="extra XLA flags for both sides")
    p.add_argument("--matmul-precision", default=None)
    p.add_argument("--no-keras", action="store_true")
    p.add_argument("--out", default=None, help="JSON file for the rows (default: "
                   "benchmarks/results/compare_<dtype>_b<batch>_r<res>.json)")
    p.add_argument("--keras-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.keras_worker:
        print(json.dumps(keras_worker(args)))
        return None
    unknown = [m for m in args.models.split(",") if m not in KERAS_NAMES]
    if unknown:
        print(f"note: no Keras counterpart known for {unknown}; jaxvision only", file=sys.stderr)
    print(f"batch {args.batch}, {args.res} px, {args.dtype}, SGD momentum; "
          f"load {os.getloadavg()[0]:.1f}")
    print(HEADER)
    rows = compare(args)
    out = args.out or os.path.join(
        ROOT, "benchmarks", "results", f"compare_{args.dtype}_b{args.batch}_r{args.res}.json"
    )
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"kind": "compare", "args": vars(args), "rows": rows,
                   "loadavg_end": os.getloadavg()}, f, indent=1)
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
