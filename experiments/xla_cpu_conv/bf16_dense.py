"""bf16 matmuls on XLA:CPU: which forms reach AMX, and a Dense whose backward does too.

    python experiments/xla_cpu_conv/bf16_dense.py [--tokens 3152] [--reps 5]

Times forward+backward of a ViT-S/16 MLP block at batch 16 (3152 tokens x 384 -> 1536 -> 384,
GELU) in four forms:

* ``f32``: float32 everywhere;
* ``bf16``: Flax's bf16 path (``nn.Dense(dtype=bfloat16)``: bf16 x bf16 -> bf16 dots). XLA:CPU
  upcasts these dots to float32 (the optimized HLO shows ``convert`` -> f32 dot -> ``convert``), so
  they do not use the bf16 matrix units;
* ``bf16_f32acc``: the forward dots as bf16 x bf16 -> float32 (``preferred_element_type``), cast
  back to bf16; autodiff's backward dots then mix f32 cotangents with bf16 operands (f32 dots);
* ``bf16_amx``: ``jaxvision.layers.dense.f32_accumulating_dot_general`` (prototyped here): a
  custom VJP whose three dots (forward, input gradient,
  kernel gradient) are all bf16 x bf16 -> float32, the form YNNPACK runs on AMX.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
from jax import lax


def _f32acc(lhs, rhs, dims):
    return lax.dot_general(lhs, rhs, dims, preferred_element_type=jnp.float32)


def amx_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """The form adopted by the library (``jaxvision.layers.dense``): all three dots of a Dense
    layer bf16 x bf16 -> float32, through a custom VJP."""
    from jaxvision.layers.dense import f32_accumulating_dot_general

    return f32_accumulating_dot_general(lhs, rhs, dimension_numbers, precision=precision,
                                        preferred_element_type=preferred_element_type)


def mlp(x, w1, w2, form):
    dn = (((x.ndim - 1,), (0,)), ((), ()))
    if form in ("f32", "bf16"):
        dot = lax.dot_general
    elif form == "bf16_f32acc":
        def dot(a, b, d):
            return _f32acc(a, b, d).astype(a.dtype)
    else:
        dot = amx_dot_general
    h = jax.nn.gelu(dot(x, w1, dn))
    return dot(h, w2, dn)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=16 * 197)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    x32 = jax.random.normal(k1, (args.tokens, args.dim))
    w1 = jax.random.normal(k2, (args.dim, 4 * args.dim)) * 0.05
    w2 = jax.random.normal(k3, (4 * args.dim, args.dim)) * 0.05
    flops = 3 * 2 * 2 * args.tokens * args.dim * 4 * args.dim  # 2 dots, fwd + 2 bwd
    fns, ref = {}, None
    for form in ("f32", "bf16", "bf16_f32acc", "bf16_amx"):
        dt = jnp.float32 if form == "f32" else jnp.bfloat16

        def loss(x, w1, w2, form=form, dt=dt):
            y = mlp(x.astype(dt), w1.astype(dt), w2.astype(dt), form)
            return jnp.sum(y.astype(jnp.float32) ** 2)

        f = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2))).lower(x32, w1, w2).compile()
        val, grads = f(x32, w1, w2)
        if ref is None:
            ref = grads
        err = max(float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(b)) + 1e-12))
                  for a, b in zip(grads, ref, strict=True))
        fns[form] = (f, err)
    times = {k: [] for k in fns}
    for _ in range(args.reps):  # interleaved, so load changes hit every form alike
        for form, (f, _) in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(x32, w1, w2))
            times[form].append(time.perf_counter() - t0)
    base = min(times["f32"])
    print(f"ViT-S MLP fwd+bwd, {args.tokens} tokens, load {os.getloadavg()[0]:.1f}")
    for form, ts in times.items():
        t = min(ts)
        print(f"{form:12s} best {t * 1e3:7.1f} ms  median {statistics.median(ts) * 1e3:7.1f} ms  "
              f"{flops / t / 1e9:6.0f} GFLOP/s  x{base / t:4.2f} vs f32   "
              f"max rel grad err vs f32 {fns[form][1]:.1e}")


if __name__ == "__main__":
    main()
