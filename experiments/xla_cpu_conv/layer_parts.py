"""Forward, input-gradient and weight-gradient time of every ResNet-50 convolution shape and of
EfficientNet-B0's depthwise convolutions, XLA's convolution vs jaxvision's CPU lowering.

    python experiments/xla_cpu_conv/layer_parts.py [--batch 16] [--set resnet50|depthwise|all]

Each layer is timed alone (best of 4 after a warm-up) with ``jaxvision.layers.conv2d(impl=...)``;
the ``x N`` column is how often the shape occurs in the network and the totals weight by it, so
they estimate the convolutions' share of a whole step.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (kernel, stride, in, out, input side, occurrences, groups = in for depthwise)
RESNET50 = [
    (7, 2, 3, 64, 224, 1), (1, 1, 64, 64, 56, 1), (3, 1, 64, 64, 56, 3), (1, 1, 64, 256, 56, 4),
    (1, 1, 256, 64, 56, 2), (1, 1, 256, 128, 56, 1), (3, 2, 128, 128, 56, 1),
    (1, 2, 256, 512, 56, 1), (1, 1, 128, 512, 28, 4), (1, 1, 512, 128, 28, 3),
    (3, 1, 128, 128, 28, 3), (1, 1, 512, 256, 28, 1), (3, 2, 256, 256, 28, 1),
    (1, 2, 512, 1024, 28, 1), (1, 1, 256, 1024, 14, 6), (1, 1, 1024, 256, 14, 5),
    (3, 1, 256, 256, 14, 5), (1, 1, 1024, 512, 14, 1), (3, 2, 512, 512, 14, 1),
    (1, 2, 1024, 2048, 14, 1), (1, 1, 512, 2048, 7, 3), (1, 1, 2048, 512, 7, 2),
    (3, 1, 512, 512, 7, 2),
]
DEPTHWISE = [  # EfficientNet-B0 (channels = in = out)
    (3, 1, 32, 32, 112, 1), (3, 2, 96, 96, 112, 1), (3, 1, 144, 144, 56, 1),
    (5, 2, 144, 144, 56, 1), (5, 1, 240, 240, 28, 1), (3, 2, 240, 240, 28, 1),
    (3, 1, 480, 480, 14, 2), (5, 1, 480, 480, 14, 1), (5, 1, 672, 672, 14, 2),
    (5, 2, 672, 672, 14, 1), (5, 1, 1152, 1152, 7, 3), (3, 1, 1152, 1152, 7, 1),
]


def best_ms(f, *args, reps=4):
    import jax

    f = jax.jit(f)
    jax.block_until_ready(f(*args))
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best


def parts(layer, batch, impl, depthwise):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxvision.layers import conv2d

    k, s, cin, cout, side, _ = layer
    groups = cin if depthwise else 1
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, side, side, cin), dtype=np.float32))
    w = jnp.asarray(0.05 * rng.standard_normal((k, k, cin // groups, cout), dtype=np.float32))

    def conv(x, w):
        return conv2d(x, w, strides=(s, s), padding="SAME", groups=groups, impl=impl)

    dy = jnp.ones(jax.eval_shape(conv, x, w).shape, jnp.float32)
    return (
        best_ms(conv, x, w),
        best_ms(lambda x, w, dy: jax.vjp(lambda x: conv(x, w), x)[1](dy)[0], x, w, dy),
        best_ms(lambda x, w, dy: jax.vjp(lambda w: conv(x, w), w)[1](dy)[0], x, w, dy),
    )


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--set", default="all", choices=["resnet50", "depthwise", "all"])
    args = p.parse_args(argv)
    sys.path.insert(0, ROOT)
    sets = {"resnet50": [(RESNET50, False)], "depthwise": [(DEPTHWISE, True)],
            "all": [(RESNET50, False), (DEPTHWISE, True)]}[args.set]
    print(f"batch {args.batch}, float32, ms (best of 4): forward / d input / d kernel; "
          f"load {os.getloadavg()[0]:.1f}")
    for layers, depthwise in sets:
        totals = {"xla": [0.0] * 3, "cpu": [0.0] * 3}
        print(f"\n{'layer':34s} {'xla fwd / dx / dw':>24s} {'cpu fwd / dx / dw':>24s}")
        for layer in layers:
            k, s, cin, cout, side, n = layer
            row = {impl: parts(layer, args.batch, impl, depthwise) for impl in ("xla", "cpu")}
            for impl, t in row.items():
                totals[impl] = [a + n * b for a, b in zip(totals[impl], t, strict=True)]
            kind = "dw " if depthwise else ""
            name = f"{kind}{k}x{k}/{s} {cin}->{cout} @{side} x{n}"
            print(f"{name:34s} " + " ".join(
                "{:7.1f} {:7.1f} {:7.1f}".format(*row[i]) for i in ("xla", "cpu")), flush=True)
        print(f"{'total (weighted)':34s} " + " ".join(
            "{:7.0f} {:7.0f} {:7.0f}".format(*totals[i]) for i in ("xla", "cpu")))


if __name__ == "__main__":
    main()
