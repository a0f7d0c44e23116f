"""Forward + backward time of one pooling layer: XLA's (flax) vs tiled_max_pool vs oneDNN's.

    PYTHONPATH=. python experiments/xla_cpu_conv/onednn_pool_bench.py [--reps 7] [--only 2x2]

Each case is a jitted ``grad(sum(pool(x) ** 2 * c))`` (squared: a gradient that does not
depend on x is constant-folded by XLA) at the shapes the models use; the best of
``--reps`` runs (the machine is shared, so the minimum is the least disturbed) in ms.
"""

from __future__ import annotations

import argparse
import importlib
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.layers import onednn_build
from jaxvision.layers.pooling import tiled_max_pool

op = importlib.import_module("jaxvision.layers.onednn_pool")  # the module, not the function

CASES = [  # name, x shape, window, stride, pads, kind
    ("resnet stem 3x3/2", (16, 112, 112, 64), 3, 2, ((1, 1), (1, 1)), "max"),
    ("vgg 2x2/2", (16, 112, 112, 128), 2, 2, ((0, 0), (0, 0)), "max"),
    ("lenet 2x2/2", (64, 28, 28, 6), 2, 2, ((0, 0), (0, 0)), "max"),
    ("densenet avg 2x2/2", (16, 56, 56, 128), 2, 2, ((0, 0), (0, 0)), "avg_include_pad"),
    ("efficientformer avg 3x3/1", (16, 56, 56, 48), 3, 1, ((1, 1), (1, 1)), "avg_exclude_pad"),
]


def best_ms(f, *args, reps):
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


def pools(k, s, pads, kind) -> dict:
    """The lowerings to compare for one case: name -> pool(x)."""
    fns = {"onednn": lambda x: op.onednn_pool(x, (k, k), (s, s), pads, kind)}
    if kind == "max":
        fns["xla"] = lambda x: nn.max_pool(x, (k, k), (s, s), padding=pads)
        if k == s and pads == ((0, 0), (0, 0)):
            fns["tiled"] = lambda x: tiled_max_pool(x, (k, k))
    else:
        fns["xla"] = lambda x: nn.avg_pool(x, (k, k), (s, s), padding=pads,
                                           count_include_pad=kind == "avg_include_pad")
    return fns


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--only", default="", help="run the cases whose name contains this")
    args = p.parse_args()
    onednn_build.single_device = lambda: True
    rng = np.random.default_rng(0)
    for dtype in (jnp.float32, jnp.bfloat16):
        for name, shape, k, s, pads, kind in CASES:
            if args.only not in name:
                continue
            x = jnp.asarray(np.maximum(rng.normal(size=shape), 0), dtype)  # ReLU'd: ties
            fns = pools(k, s, pads, kind)
            y = fns["xla"](x)
            c = jnp.asarray(rng.normal(size=y.shape), y.dtype)
            row = []
            for impl, f in fns.items():
                step = jax.jit(jax.grad(lambda x, f=f, c=c: jnp.sum(f(x).astype(jnp.float32) ** 2
                                                                   * c)))
                row.append(f"{impl} {best_ms(step, x, reps=args.reps):7.1f}")
            print(f"{jnp.dtype(dtype).name:8s} {name:27s} " + "  ".join(row), flush=True)


if __name__ == "__main__":
    main()
