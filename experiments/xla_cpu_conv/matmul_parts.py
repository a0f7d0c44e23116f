"""ViT-S/16's Dense products one at a time: oneDNN's matmul vs XLA's dot, forward and both
backward products, float32 and bf16 (bf16 x bf16 -> f32 then cast for XLA, as
``lowering.matmul``; oneDNN accumulates in f32 too).

    PYTHONPATH=. python experiments/xla_cpu_conv/matmul_parts.py [--reps 7]

Rows M = 16 x 197 tokens (batch 16, 224 px); shapes (M, K, N): fc1 (3152, 384, 1536), fc2
(3152, 1536, 384), one of q/k/v/out (3152, 384, 384). Each product is its own jitted function;
prints the best-of-``reps`` ms per product: forward C = A B, dA = dC B^T, dB = A^T dC.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.layers import onednn_matmul as om
from jaxvision.layers.lowering import matmul

SHAPES = {"fc1": (3152, 384, 1536), "fc2": (3152, 1536, 384), "qkv": (3152, 384, 384)}


def best_ms(fn, *args, reps):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return min(times) * 1e3


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args(argv)
    assert om.available(), om.why_unavailable()
    rng = np.random.default_rng(0)
    nn_, nt, tn = ((((1,), (0,)), ((), ()))), (((1,), (1,)), ((), ())), (((0,), (0,)), ((), ()))
    print("dtype layer (M, K, N): ms oneDNN / XLA for forward, dA, dB")
    for dtype in (jnp.float32, jnp.bfloat16):
        for name, (m, k, n) in SHAPES.items():
            a, b, c = (jnp.asarray(rng.normal(size=s), dtype) for s in ((m, k), (k, n), (m, n)))
            row = []
            for ta, tb, dims, x, y in ((False, False, nn_, a, b), (False, True, nt, c, b),
                                       (True, False, tn, a, c)):
                one = best_ms(jax.jit(lambda x, y, ta=ta, tb=tb: om._mm(ta, tb, x, y)), x, y,
                              reps=args.reps)
                xla = best_ms(jax.jit(lambda x, y, dims=dims: matmul(x, y, dims)), x, y,
                              reps=args.reps)
                row.append(f"{one:6.1f} / {xla:6.1f}")
            print(f"{jnp.dtype(dtype).name:8s} {name} {(m, k, n)}: " + "   ".join(row), flush=True)


if __name__ == "__main__":
    main()
