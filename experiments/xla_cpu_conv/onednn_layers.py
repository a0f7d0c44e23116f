"""Seventh session (issue 15): single convolution layers, oneDNN vs jaxvision's pure-JAX CPU forms
vs XLA's convolution.

    PYTHONPATH=. python experiments/xla_cpu_conv/onednn_layers.py [--reps 4] [--dtypes float32,bfloat16]

Prints best-of-reps milliseconds (wall, one process, one device) of the forward pass and of
forward + both gradients of ``conv2d(..., impl=...)`` for 'onednn'
(``jaxvision.layers.onednn_conv``), 'cpu' (the pure-JAX forms: ``jaxvision.layers.lowering``)
and 'xla', at batch 16 for layers of ResNet-50, MobileNetV2 and EfficientNet-B0, and the
largest relative difference of oneDNN's output and gradients from XLA's.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp
import numpy as np

from experiments.xla_cpu_conv.layer_parts import best_ms
from jaxvision.layers import conv2d

LAYERS = (  # name, H (square), C, k, F, stride, groups
    ("ResNet 3x3 64 @56", 56, 64, 3, 64, 1, 1),
    ("ResNet 3x3 128 @28", 28, 128, 3, 128, 1, 1),
    ("ResNet 3x3 256 @14", 14, 256, 3, 256, 1, 1),
    ("ResNet 3x3 512 @7", 7, 512, 3, 512, 1, 1),
    ("ResNet 1x1 64->256 @56", 56, 64, 1, 256, 1, 1),
    ("ResNet 1x1 256->64 @56", 56, 256, 1, 64, 1, 1),
    ("ResNet stem 7x7/2 3->64 @224", 224, 3, 7, 64, 2, 1),
    ("MobileNetV2 dw 3x3 32 @112", 112, 32, 3, 32, 1, 32),
    ("MobileNetV2 dw 3x3 144 @56", 56, 144, 3, 144, 1, 144),
    ("EfficientNet dw 5x5 240 @28", 28, 240, 5, 240, 1, 240),
)
IMPLS = ("onednn", "cpu", "xla")


def _forward(stride, groups, impl):
    return lambda x, w: conv2d(x, w, strides=(stride, stride), groups=groups, impl=impl)


def _train(stride, groups, impl):
    f = _forward(stride, groups, impl)
    return jax.value_and_grad(lambda x, w: jnp.sum(f(x, w).astype(jnp.float32) ** 2), (0, 1))


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=4)
    p.add_argument("--dtypes", default="float32,bfloat16")
    a = p.parse_args(argv)
    print(f"jax {jax.__version__}, devices {jax.device_count()}")
    print("| dtype | layer | fwd onednn | fwd cpu | fwd xla | fwd+bwd onednn | fwd+bwd cpu | "
          "fwd+bwd xla | max rel. diff (y, dx, dw) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for dtype in a.dtypes.split(","):
        for name, h, c, k, f, s, g in LAYERS:
            key_x, key_w = jax.random.split(jax.random.key(0))
            x = jax.random.normal(key_x, (16, h, h, c), dtype)
            w = (jax.random.normal(key_w, (k, k, c // g, f), jnp.float32) * 0.1).astype(dtype)

            fwd = functools.partial(_forward, s, g)
            train = functools.partial(_train, s, g)
            t_f = [best_ms(fwd(i), x, w, reps=a.reps) for i in IMPLS]
            t_t = [best_ms(train(i), x, w, reps=a.reps) for i in IMPLS]
            got, want = jax.jit(train("onednn"))(x, w), jax.jit(train("xla"))(x, w)
            diffs = [_rel(got[1][0], want[1][0]), _rel(got[1][1], want[1][1])]
            y_diff = _rel(jax.jit(fwd("onednn"))(x, w), jax.jit(fwd("xla"))(x, w))
            cells = " | ".join(f"{t:.1f}" for t in (*t_f, *t_t))
            print(f"| {dtype} | {name} | {cells} | {y_diff:.0e}, {diffs[0]:.0e}, "
                  f"{diffs[1]:.0e} |", flush=True)


if __name__ == "__main__":
    main()
