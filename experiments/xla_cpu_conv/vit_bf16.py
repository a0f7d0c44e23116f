"""vit_s16 training step: float32 vs bf16 vs bf16 with AMX dots, interleaved in one process.

    python experiments/xla_cpu_conv/vit_bf16.py [--model vit_s16] [--batch 16] [--res 224] [--steps 2]

The three steps (library train step, SGD momentum, donated state) are compiled first, then their
timed steps alternate, so all three see the same machine load. ``bf16_amx`` is the bf16 model
traced after ``benchmarks.throughput.use_amx_dense()`` (every Dense dot bf16 x bf16 -> f32).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="vit_s16")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--res", type=int, default=224)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--out", default="experiments/xla_cpu_conv/vit_bf16_results.json")
    args = p.parse_args()
    import jax
    import jax.numpy as jnp
    import numpy as np

    from benchmarks.throughput import _flops, build_train_step, use_amx_dense
    from jaxvision import models
    from jaxvision.training.parallel import DataParallel

    dp = DataParallel("jit", devices=jax.devices()[:1])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, args.res, args.res, 3), dtype=np.float32)
    y = rng.integers(0, 1000, (args.batch,)).astype(np.int32)
    batch = dp.put_batch({"image": x, "label": y})
    runs = {}
    for name, dtype in (("f32", jnp.float32), ("bf16", jnp.bfloat16), ("bf16_amx", jnp.bfloat16)):
        if name == "bf16_amx":
            use_amx_dense()  # affects models traced from here on
        model = models.create(args.model, dtype=dtype)
        v = jax.jit(lambda k, x, model=model: model.init(k, x, train=False))(
            jax.random.key(0), x[:1])
        step, state = build_train_step(model, v, 1000, dp)
        state = dp.put_state(state)
        t0 = time.perf_counter()
        lowered = dp.compile_train_step(step).lower(state, batch)
        compiled = lowered.compile()
        compile_s = time.perf_counter() - t0
        state, m = compiled(state, batch)  # warm-up
        jax.block_until_ready(state)
        runs[name] = {"compiled": compiled, "state": state, "compile_s": compile_s,
                      "flops_per_img": _flops(lowered) / args.batch, "times": [],
                      "loss0": float(m["loss"])}
        print(f"{name}: compiled in {compile_s:.0f} s, first loss {float(m['loss']):.4f}",
              flush=True)
    for _ in range(args.steps):
        for r in runs.values():
            t0 = time.perf_counter()
            r["state"], _ = r["compiled"](r["state"], batch)
            jax.block_until_ready(r["state"])
            r["times"].append(time.perf_counter() - t0)
    out = {"model": args.model, "batch": args.batch, "res": args.res,
           "loadavg": os.getloadavg()[0], "runs": {}}
    base = statistics.median(runs["f32"]["times"])
    for name, r in runs.items():
        t = statistics.median(r["times"])
        out["runs"][name] = {"train_step_s": t, "train_img_per_s": args.batch / t,
                             "speedup_vs_f32": base / t, "compile_s": r["compile_s"],
                             "flops_per_img": r["flops_per_img"], "times": r["times"],
                             "first_loss": r["loss0"]}
        print(f"{name:9s} {t:7.1f} s/step  {args.batch / t:6.2f} img/s  x{base / t:.2f} vs f32  "
              f"compile {r['compile_s']:.0f} s", flush=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
