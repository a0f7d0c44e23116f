"""The q/k/v projections of one ViT-S/16 attention block as three products or as one.

    python experiments/onednn_study/qkv_fusion.py [--dtype float32|bfloat16] [--rounds 15]

One attention block's projections and attention core, forward and backward (the gradient of
sum(attention(x) * cotangent) in x, the kernel and the bias), at ViT-S/16's training shapes
(batch 16, 197 tokens, 6 heads of 64): 'separate' runs the three (384, 384) projections as three
oneDNN products (jaxvision's form), 'fused' as one (384, 1152) product (timm's qkv Linear) whose
output is sliced into q, k and v for the attention handler (the slices are copies, and their
gradients are concatenated). Both variants alternate for ``--rounds`` rounds in one process;
prints the best and median milliseconds of each. Section 8 of README.md gives the results.
"""

from __future__ import annotations

import argparse
import time


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--rounds", type=int, default=15)
    args = p.parse_args(argv)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxvision.layers.onednn_attention import onednn_attention
    from jaxvision.layers.onednn_matmul import onednn_linear

    dt = jnp.dtype(args.dtype)
    n, t, h, d = 16, 197, 6, 64
    c = h * d
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(n * t, c)), dt)
    w = jnp.asarray(rng.normal(size=(c, 3, h, d)) * 0.05, dt)
    b = jnp.asarray(rng.normal(size=(3, h, d)) * 0.05, dt)
    cot = jnp.asarray(rng.normal(size=(n, t, h, d)), dt)

    def loss(out):
        return jnp.sum((out * cot).astype(jnp.float32))

    def separate(x, w, b):
        q, k, v = (onednn_linear(x, w[:, j].reshape(c, c), b[j].reshape(c)).reshape(n, t, h, d)
                   for j in range(3))
        return loss(onednn_attention(q, k, v))

    def fused(x, w, b):
        qkv = onednn_linear(x, w.reshape(c, 3 * c), b.reshape(3 * c)).reshape(n, t, 3, h, d)
        return loss(onednn_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]))

    steps = {name: jax.jit(jax.grad(f, argnums=(0, 1, 2)))
             for name, f in (("separate", separate), ("fused", fused))}
    times = {name: [] for name in steps}
    for f in steps.values():
        jax.block_until_ready(f(x, w, b))
    for _ in range(args.rounds):
        for name, f in steps.items():
            start = time.perf_counter()
            jax.block_until_ready(f(x, w, b))
            times[name].append(time.perf_counter() - start)
    for name, ts in times.items():
        ts = sorted(ts)
        print(f"{args.dtype} {name:8s} best {ts[0] * 1e3:.1f} ms, median "
              f"{ts[len(ts) // 2] * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
