"""jaxvision vs Keras 3 (JAX backend) on the same model, batch, resolution and optimizer.

    python -m benchmarks.compare [--models resnet50,efficientnet_b0,mobilenet_v2] [--batch 16]
        [--res 224] [--steps 3] [--warmup 1] [--dtype float32] [--conv-impl auto|xla|cpu]
        [--xla-flags "..."] [--out FILE]

Each model runs in its own subprocess (a fresh XLA), holding both frameworks: after both steps
are compiled, their timed steps alternate (jaxvision, Keras, jaxvision, ...), so both see the same
machine load even when it drifts (this machine is shared). Both train with SGD (lr 0.1, momentum
0.9) on softmax cross-entropy from logits, on random images and labels, with 1000 classes:

* jaxvision: ``benchmarks.throughput.benchmark`` (the library's train step, donated state, each
  step ended by ``block_until_ready``);
* Keras: ``keras.applications.<Model>(weights=None, classifier_activation=None)`` compiled with
  ``keras.optimizers.SGD(0.1, momentum=0.9)`` and ``SparseCategoricalCrossentropy(from_logits=True)``
  (Keras' JAX trainer jit-compiles the step and donates its state); each step is
  ``model.train_on_batch`` followed by ``block_until_ready`` on all model and optimizer variables
  (the returned loss alone does not wait for the variable updates, which would otherwise run into
  the next jaxvision step).

Keras is an optional dependency: ``pip install jaxvision[bench]`` (``KERAS_BACKEND=jax`` is set
before it is imported). Keras' FLOPs and memory come from XLA's analysis of its own compiled train
step (compiled a second time, after the timing; ``--no-keras-flops`` skips it); both MFUs use the
matmul probe of the same process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

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


def _keras_model(args):
    """(model, x, y): a compiled keras.applications model and one batch (numpy)."""
    import keras
    import numpy as np

    if args.dtype != "float32":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    cls = getattr(keras.applications, KERAS_NAMES[args.model])
    model = cls(weights=None, input_shape=(args.res, args.res, 3), classes=1000,
                classifier_activation=None)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, args.res, args.res, 3), dtype=np.float32)
    y = rng.integers(0, 1000, (args.batch,)).astype(np.int32)
    return model, x, y


def _keras_cost(model, x, y) -> dict:
    """FLOPs and memory of Keras' own compiled train step (a second compilation of it)."""
    import jax

    from benchmarks.throughput import _flops, _peak_bytes

    try:
        state = model._get_jax_state(  # Keras' JAX trainer state, as train_on_batch builds it
            trainable_variables=True, non_trainable_variables=True, optimizer_variables=True,
            metrics_variables=True, purge_model_variables=False,
        )
        lowered = jax.jit(model.train_step).lower(state, (x, y, None))
        compiled = lowered.compile()
    except Exception as e:  # private API: report instead of failing the comparison
        return {"cost_error": repr(e)[:300]}
    return {"flops_per_img": _flops(lowered) / x.shape[0], "peak_bytes": _peak_bytes(compiled)}


def worker(args) -> dict:
    """One model, in a fresh process: Keras and jaxvision steps timed in alternation."""
    os.environ["KERAS_BACKEND"] = "jax"  # before keras is imported
    from benchmarks.throughput import benchmark, configure_xla

    configure_xla(1, args.xla_flags)
    import jax

    if args.matmul_precision:
        jax.config.update("jax_default_matmul_precision", args.matmul_precision)
    from benchmarks.throughput import apply_conv_impl
    from jaxvision.layers import conv_impl

    apply_conv_impl(args.conv_impl)
    kr, step = None, None
    if KERAS_NAMES.get(args.model) and not args.no_keras:
        import keras

        kmodel, x, y = _keras_model(args)
        t0 = time.perf_counter()
        kmodel.train_on_batch(x, y)  # traces, compiles and runs one step
        first = time.perf_counter() - t0

        def step():
            kmodel.train_on_batch(x, y)  # returns host numbers (the loss) ...
            # ... but the variable updates can still be running: wait for them too, so that
            # Keras' work is timed as Keras' and does not overlap the next jaxvision step.
            jax.block_until_ready([v.value for v in kmodel.variables + kmodel.optimizer.variables])

        kr = {"framework": "keras-jax", "keras": keras.__version__,
              "keras_model": KERAS_NAMES[args.model],
              "params": int(sum(int(np.prod(w.shape)) for w in kmodel.trainable_weights))}
    jv = benchmark(args.model, args.batch, args.res, dtype=args.dtype, steps=args.steps,
                   warmup=args.warmup, infer=False, probe=True, companion=step)
    jv.pop("_state", None)
    jv["conv_impl"] = conv_impl()
    ktimes = jv.pop("companion_step_s_all", None)
    if kr is not None:
        med = statistics.median(ktimes)
        peak = jv["peak_flops_bf16" if args.dtype == "bfloat16" else "peak_flops_f32"]
        kr.update({
            "train_step_s": med, "train_step_s_all": ktimes,
            "train_img_per_s": args.batch / med,
            # The first call = trace + compile + one step; the step's share is taken off.
            "compile_s": max(first - med, 0.0),
        })
        if not args.no_keras_flops:
            kr.update(_keras_cost(kmodel, x, y))
        if "flops_per_img" in kr:
            kr["mfu"] = kr["train_img_per_s"] * kr["flops_per_img"] / peak
    return {"model": args.model, "jaxvision": jv, "keras": kr}


def _run(cmd, env) -> tuple[dict | None, str]:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line), ""
    return None, (proc.stderr or proc.stdout)[-1500:]


def _save(args, rows) -> str:
    out = args.out or os.path.join(
        ROOT, "benchmarks", "results", f"compare_{args.dtype}_b{args.batch}_r{args.res}.json"
    )
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"kind": "compare", "args": vars(args), "rows": rows,
                   "loadavg_end": os.getloadavg()}, f, indent=1)
    return out


def compare(args) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="jax")
    rows = []
    for name in args.models.split(","):
        cmd = [sys.executable, "-m", "benchmarks.compare", "--worker", "--model", name,
               "--batch", str(args.batch), "--res", str(args.res), "--dtype", args.dtype,
               "--steps", str(args.steps), "--warmup", str(args.warmup)]
        if args.xla_flags:
            cmd += ["--xla-flags", args.xla_flags]
        if args.matmul_precision:
            cmd += ["--matmul-precision", args.matmul_precision]
        if args.no_keras:
            cmd.append("--no-keras")
        cmd += ["--conv-impl", args.conv_impl]
        if args.no_keras_flops:
            cmd.append("--no-keras-flops")
        row, err = _run(cmd, env)
        if row is None:
            print(f"[{name}] failed:\n{err}", file=sys.stderr)
            row = {"model": name, "jaxvision": None, "keras": None, "error": err}
        jv, kr = row.get("jaxvision"), row.get("keras")
        if jv and kr:
            row["ratio"] = jv["train_img_per_s"] / kr["train_img_per_s"]
        rows.append(row)
        _save(args, rows)  # after every model, so a long run keeps what it measured
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
    p.add_argument("--conv-impl", default="auto", choices=["auto", "xla", "cpu"],
                   help="jaxvision side: how its convolutions are lowered (see "
                   "benchmarks.throughput --conv-impl); Keras always uses XLA's convolution")
    p.add_argument("--out", default=None, help="JSON file for the rows (default: "
                   "benchmarks/results/compare_<dtype>_b<batch>_r<res>.json)")
    p.add_argument("--no-keras-flops", action="store_true",
                   help="skip compiling Keras' step a second time for its FLOPs and memory")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--model", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return None
    unknown = [m for m in args.models.split(",") if m not in KERAS_NAMES]
    if unknown:
        print(f"note: no Keras counterpart known for {unknown}; jaxvision only", file=sys.stderr)
    print(f"batch {args.batch}, {args.res} px, {args.dtype}, SGD momentum; "
          f"load {os.getloadavg()[0]:.1f}")
    print(HEADER)
    rows = compare(args)
    print(f"wrote {_save(args, rows)}")
    return rows


if __name__ == "__main__":
    main()
