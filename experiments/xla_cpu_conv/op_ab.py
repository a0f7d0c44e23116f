"""A/B of one oneDNN op in a train step: oneDNN's form vs XLA's (everything else equal).

    python experiments/xla_cpu_conv/op_ab.py --op matmul|attention|gelu|layer_norm --model vit_s16
        --dtype float32 [--batch 16] [--res 224] [--rounds 4]

Compiles the library's train step (``benchmarks.throughput.build_train_step``) twice in one
process: 'xla' traced with the op's ``onednn_<op>_applies`` patched to False (e.g. Dense
products are XLA's dot, as before jaxvision.layers.onednn_matmul; every other op stays as the
library builds it), 'onednn' as the library builds it. Then alternates one timed step of each for ``--rounds`` rounds (after one
untimed step each), so both see the same load on a shared machine, and prints per variant the
best wall-clock img/s and the best img per CPU-second of this process (less sensitive to other
processes taking the cores), with the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--op", default="matmul", choices=["matmul", "attention", "gelu", "layer_norm"])
    p.add_argument("--model", default="vit_s16")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--res", type=int, default=224)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args(argv)
    sys.path.insert(0, ROOT)
    import importlib

    import jax
    import numpy as np

    from benchmarks.throughput import build_train_step
    from jaxvision import models
    from jaxvision.training.parallel import DataParallel

    dp = DataParallel("jit", devices=jax.devices()[:1])
    model = models.create(args.model, dtype=args.dtype)
    shape = models.input_shape(args.model, args.res, args.batch)
    rng = np.random.default_rng(0)
    batch = dp.put_batch({"image": rng.standard_normal(shape, dtype=np.float32),
                          "label": rng.integers(0, 1000, args.batch).astype(np.int32)})
    variables = jax.jit(lambda k, x: model.init(k, x, train=False))(
        jax.random.key(0), batch["image"][:1])
    module = importlib.import_module(f"jaxvision.layers.onednn_{args.op}")
    name = f"onednn_{args.op}_applies"
    applies = getattr(module, name)
    runs = {}
    for variant in ("xla", "onednn"):
        setattr(module, name, applies if variant == "onednn" else (lambda *a, **k: False))
        # A copy each: the compiled step donates its state, which would delete shared arrays.
        step, state = build_train_step(model, jax.tree.map(np.array, variables), 1000, dp)
        state = dp.put_state(state)
        compiled = dp.compile_train_step(step).lower(state, batch).compile()
        n_calls = compiled.as_text().count(f"jaxvision_onednn_{args.op}")
        state, _ = compiled(state, batch)
        jax.block_until_ready(state)
        runs[variant] = [compiled, state, [], [], n_calls]
    setattr(module, name, applies)
    for _ in range(args.rounds):
        for run in runs.values():
            t, c = time.perf_counter(), time.process_time()
            run[1], _ = run[0](run[1], batch)
            jax.block_until_ready(run[1])
            run[2].append(time.perf_counter() - t)
            run[3].append(time.process_time() - c)
    load = os.getloadavg()
    for variant, (_, _, wall, cpu, n_calls) in runs.items():
        print(f"{args.model} b{args.batch} {args.res}px {args.dtype} {args.op}={variant:6s} "
              f"({n_calls} oneDNN {args.op} calls in HLO): best {args.batch / min(wall):.2f} img/s "
              f"wall, {args.batch / min(cpu):.2f} img/CPU-s; steps "
              + " ".join(f"{w:.2f}" for w in wall) + " s")
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
