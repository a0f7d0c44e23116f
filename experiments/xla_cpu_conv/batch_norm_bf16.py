"""BatchNorm training: flax.linen.BatchNorm's formulation vs jaxvision's (``norm.batch_norm_train``),
per layer and per whole train step, interleaved in one process so both see the same machine load.

    python experiments/xla_cpu_conv/batch_norm_bf16.py layer [--shape 16,56,56,256] [--reps 7]
    python experiments/xla_cpu_conv/batch_norm_bf16.py step --model resnet50 --dtype bfloat16 [--reps 7]

``layer``: forward + backward (VJP with a random cotangent) of BatchNorm + ReLU, float32 and bf16,
best and median ms. ``step``: the library's train step (``benchmarks.throughput.build_train_step``,
batch 16, 224 px, one device) with jaxvision's BatchNorm forced onto Flax's code (its fast path
switched off) vs as shipped: best/median wall seconds and img/s, and process CPU seconds per step
(steadier than wall time when other processes share the cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _summary(ts):
    ts = sorted(ts)
    return ts[0], ts[len(ts) // 2]


def layer(shape, reps):
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxvision.layers.norm import BatchNorm

    def make(kind, dt):
        if kind == "jaxvision":
            m = BatchNorm(dtype=dt)
            ap = lambda v, x: m.apply(v, x, train=True, mutable=["batch_stats"])  # noqa: E731
            v = m.init(jax.random.key(0), jnp.zeros((1, *shape[1:]), dt))
        else:
            m = nn.BatchNorm(momentum=0.9, dtype=dt, use_running_average=False)
            ap = lambda v, x: m.apply(v, x, mutable=["batch_stats"])  # noqa: E731
            v = m.init(jax.random.key(0), jnp.zeros((1, *shape[1:]), dt))
        r = np.random.default_rng(0)
        x = jnp.asarray(r.standard_normal(shape, np.float32), dt)
        dy = jnp.asarray(r.standard_normal(shape, np.float32), dt)

        def step(p, x, dy):
            def f(p, x):
                y, st = ap({"params": p, "batch_stats": v["batch_stats"]}, x)
                return jax.nn.relu(y), st
            (y, st), vjp = jax.vjp(f, p, x)
            return y, st, vjp((dy, jax.tree.map(jnp.zeros_like, st)))

        return jax.jit(step).lower(v["params"], x, dy).compile(), (v["params"], x, dy)

    for dt in (jnp.float32, jnp.bfloat16):
        runs = {k: make(k, dt) for k in ("flax", "jaxvision")}
        times = {k: [] for k in runs}
        for c, a in runs.values():
            jax.block_until_ready(c(*a))
        for _ in range(reps):
            for k, (c, a) in runs.items():
                t = time.perf_counter()
                jax.block_until_ready(c(*a))
                times[k].append(time.perf_counter() - t)
        print(f"{shape} {jnp.dtype(dt).name} BN+ReLU fwd+bwd ms (best/median): " + ", ".join(
            f"{k} {_summary(v)[0] * 1e3:.1f}/{_summary(v)[1] * 1e3:.1f}" for k, v in times.items()),
            flush=True)


def step(model_name, dtype, reps):
    import jax
    import numpy as np

    from benchmarks.throughput import build_train_step
    from jaxvision import models
    from jaxvision.layers import norm
    from jaxvision.training.parallel import DataParallel

    dp = DataParallel("jit", devices=jax.devices()[:1])
    shape = models.input_shape(model_name, 224, 16)
    rng = np.random.default_rng(0)
    batch = dp.put_batch({"image": rng.standard_normal(shape, dtype=np.float32),
                          "label": rng.integers(0, 1000, 16).astype(np.int32)})
    fast = norm.BatchNorm._fast_path
    steps = {}
    for kind in ("flax", "jaxvision"):
        norm.BatchNorm._fast_path = fast if kind == "jaxvision" else (lambda self, x, mask: False)
        try:
            model = models.create(model_name, dtype=dtype)
            variables = jax.jit(lambda k, x: model.init(k, x, train=False))(  # noqa: B023
                jax.random.key(0), batch["image"][:1])
            fn, state = build_train_step(model, variables, 1000, dp)
            state = dp.put_state(state)
            compiled = dp.compile_train_step(fn).lower(state, batch).compile()
        finally:
            norm.BatchNorm._fast_path = fast
        for _ in range(2):
            state, _ = compiled(state, batch)
            jax.block_until_ready(state)
        steps[kind] = [compiled, state]
    wall = {k: [] for k in steps}
    cpu = {k: [] for k in steps}
    for _ in range(reps):
        for k, s in steps.items():
            t, c = time.perf_counter(), time.process_time()
            s[1], _ = s[0](s[1], batch)
            jax.block_until_ready(s[1])
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    for k in steps:
        (wb, wm), (cb, cm) = _summary(wall[k]), _summary(cpu[k])
        print(f"{model_name} {dtype} {k:9s}: wall best {wb:.3f} s ({16 / wb:.2f} img/s), median "
              f"{wm:.3f} s ({16 / wm:.2f} img/s); CPU s/step best {cb:.2f} median {cm:.2f}; "
              f"load {load}", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["layer", "step"])
    p.add_argument("--shape", default="16,56,56,256")
    p.add_argument("--model", default="resnet50")
    p.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args(argv)
    sys.path.insert(0, ROOT)
    if args.what == "layer":
        layer(tuple(int(s) for s in args.shape.split(",")), args.reps)
    else:
        step(args.model, args.dtype, args.reps)


if __name__ == "__main__":
    main()
