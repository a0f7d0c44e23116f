"""What keeps XLA's CPU convolutions behind oneDNN: flags, layouts, precision, lowering, batch.

    python experiments/xla_cpu_conv/conv_bench.py [--batch 16] [--reps 3] [--configs NAME,...]
    python experiments/xla_cpu_conv/conv_bench.py --worker --flags "..." --lowering xla ...

Each configuration runs in its own subprocess (XLA reads XLA_FLAGS once per process) and times
forward and forward+backward (gradients w.r.t. input and kernel, as in training) of four
representative ResNet-50 convolutions at batch 16, reporting GFLOP/s (2 x MACs, the convention of
XLA's cost analysis and of the matmul probe), plus the square-matmul probe in the same process.

Lowerings:
* ``xla``: ``lax.conv_general_dilated`` in NHWC/HWIO (what flax.linen.Conv emits);
* ``nchw``: the same convolution in NCHW/OIHW;
* ``im2col``: patches (``lax.conv_general_dilated_patches``) then one matmul, so the FLOPs go
  through XLA's dot path (Eigen / YNNPACK / oneDNN as the flags choose) instead of its conv path.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

# (name, kernel, stride, in_ch, out_ch, input side) — ResNet-50 layers.
LAYERS = [
    ("stem7x7s2", 7, 2, 3, 64, 224),
    ("c3x3_56", 3, 1, 64, 64, 56),
    ("c1x1_56", 1, 1, 256, 64, 56),
    ("c3x3_14", 3, 1, 256, 256, 14),
]

CONFIGS = {
    # name: (XLA_FLAGS, lowering, dtype, matmul precision)
    "default_f32": ("", "xla", "float32", None),
    "default_bf16": ("", "xla", "bfloat16", None),
    "nchw_f32": ("", "nchw", "float32", None),
    "im2col_f32": ("", "im2col", "float32", None),
    "im2col_bf16": ("", "im2col", "bfloat16", None),
    "slices_f32": ("", "slices", "float32", None),
    "slices_bf16": ("", "slices", "bfloat16", None),
    "ynn_conv_f32": (
        "--xla_cpu_experimental_ynn_fusion_type=individual_dot,individual_convolution",
        "xla",
        "float32",
        None,
    ),
    "ynn_conv_bf16": (
        "--xla_cpu_experimental_ynn_fusion_type=individual_dot,individual_convolution",
        "xla",
        "bfloat16",
        None,
    ),
    "ynn_off_f32": ("--xla_cpu_experimental_ynn_fusion_type=", "xla", "float32", None),
    "onednn_f32": (
        "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true",
        "xla",
        "float32",
        None,
    ),
    "onednn_bf16": (
        "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true",
        "xla",
        "bfloat16",
        None,
    ),
    "xnn_f32": ("--xla_cpu_use_xnnpack=true", "xla", "float32", None),
    "fast_math_f32": ("--xla_cpu_enable_fast_math=true", "xla", "float32", None),
    "eigen_single_f32": ("--xla_cpu_multi_thread_eigen=false", "xla", "float32", None),
    "precision_bf16_f32": ("", "xla", "float32", "bfloat16"),
}


def _conv(lowering, x, w, stride, pad):
    from jax import lax

    if lowering == "xla":
        return lax.conv_general_dilated(
            x, w, (stride, stride), pad, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    if lowering == "nchw":
        return lax.conv_general_dilated(
            x, w, (stride, stride), pad, dimension_numbers=("NCHW", "OIHW", "NCHW")
        )
    if lowering == "im2col":
        k = w.shape[0]
        cin, cout = w.shape[2], w.shape[3]
        if k == 1 and stride == 1:
            return x @ w.reshape(cin, cout)
        # Patches come out channel-major (C, kh, kw): reorder the kernel to match.
        p = lax.conv_general_dilated_patches(
            x, (k, k), (stride, stride), pad, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        wm = w.transpose(2, 0, 1, 3).reshape(cin * k * k, cout)
        return p @ wm
    if lowering == "slices":
        # im2col from k*k shifted strided slices (no patches op), then one matmul.
        k = w.shape[0]
        cin, cout = w.shape[2], w.shape[3]
        if k == 1:
            return x[:, ::stride, ::stride] @ w.reshape(cin, cout)
        import jax.numpy as jnp

        xp = jnp.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
        ho = (x.shape[1] + sum(pad[0]) - k) // stride + 1
        wo = (x.shape[2] + sum(pad[1]) - k) // stride + 1
        cols = [
            xp[:, i : i + stride * (ho - 1) + 1 : stride, j : j + stride * (wo - 1) + 1 : stride]
            for i in range(k)
            for j in range(k)
        ]
        return jnp.concatenate(cols, axis=-1) @ w.reshape(k * k * cin, cout)
    raise ValueError(lowering)


def worker(args) -> dict:
    import jax
    import jax.numpy as jnp

    from benchmarks.throughput import matmul_peak

    if args.precision:
        jax.config.update("jax_default_matmul_precision", args.precision)
    dtype = jnp.dtype(args.dtype)
    out = {"flags": os.environ.get("XLA_FLAGS", ""), "lowering": args.lowering,
           "dtype": args.dtype, "precision": args.precision, "batch": args.batch, "layers": {}}
    for name, k, s, cin, cout, side in LAYERS:
        pad = [((k - 1) // 2, (k - 1) // 2)] * 2
        kx, kw = jax.random.split(jax.random.key(0))
        if args.lowering == "nchw":
            x = jax.random.normal(kx, (args.batch, cin, side, side), jnp.float32).astype(dtype)
            w = (jax.random.normal(kw, (cout, cin, k, k), jnp.float32) * 0.05).astype(dtype)
        else:
            x = jax.random.normal(kx, (args.batch, side, side, cin), jnp.float32).astype(dtype)
            w = (jax.random.normal(kw, (k, k, cin, cout), jnp.float32) * 0.05).astype(dtype)
        osz = side // s
        macs = args.batch * osz * osz * k * k * cin * cout

        def fwd(x, w, s=s, pad=pad):
            return _conv(args.lowering, x, w, s, pad)

        def loss(x, w, s=s, pad=pad):
            return jnp.sum(_conv(args.lowering, x, w, s, pad).astype(jnp.float32) ** 2)

        fb = jax.grad(loss, argnums=(0, 1))
        row = {"gmac": macs / 1e9}
        for tag, f, mult in (("fwd", fwd, 2), ("fwd_bwd", fb, 6)):
            c = jax.jit(f).lower(x, w).compile()
            jax.block_until_ready(c(x, w))
            ts = []
            for _ in range(args.reps):
                t0 = time.perf_counter()
                jax.block_until_ready(c(x, w))
                ts.append(time.perf_counter() - t0)
            t = statistics.median(ts)
            row[f"{tag}_ms"] = t * 1e3
            row[f"{tag}_gflops"] = mult * macs / t / 1e9
        out["layers"][name] = row
    out["matmul_f32_gflops"] = matmul_peak(jnp.float32) / 1e9
    out["matmul_bf16_gflops"] = matmul_peak(jnp.bfloat16) / 1e9
    try:
        out["loadavg"] = os.getloadavg()[0]
    except OSError:
        out["loadavg"] = None
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--worker", action="store_true")
    p.add_argument("--flags", default="")
    p.add_argument("--lowering", default="xla")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--precision", default=None)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--out", default="experiments/xla_cpu_conv/results.json")
    args = p.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args)))
        return
    results = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            results = json.load(f)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for name in args.configs.split(","):
        flags, lowering, dtype, precision = CONFIGS[name]
        env = dict(os.environ, XLA_FLAGS=flags, PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="2")
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--lowering", lowering,
               "--dtype", dtype, "--batch", str(args.batch), "--reps", str(args.reps)]
        if precision:
            cmd += ["--precision", precision]
        t0 = time.time()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=root)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            results[name] = {"error": (proc.stderr or proc.stdout)[-800:], "flags": flags}
            print(f"{name}: FAILED\n{proc.stderr[-800:]}", flush=True)
            continue
        r = json.loads(line[0][7:])
        results[name] = r
        summary = "  ".join(
            f"{ln} {v['fwd_bwd_gflops']:.0f}" for ln, v in r["layers"].items()
        )
        print(f"{name:20s} fwd+bwd GFLOP/s: {summary}  | matmul f32 {r['matmul_f32_gflops']:.0f} "
              f"bf16 {r['matmul_bf16_gflops']:.0f}  load {r['loadavg']:.1f}  "
              f"({time.time() - t0:.0f} s)", flush=True)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
