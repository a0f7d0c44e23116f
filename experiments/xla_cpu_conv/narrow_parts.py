"""Sixth session (issue 15): the LeNet-5 step's parts and image stems, XLA vs jaxvision's forms.

    PYTHONPATH=. python experiments/xla_cpu_conv/narrow_parts.py [--reps 5]

Prints best-of-reps milliseconds (wall, one process) of each pass of

* the few-channel convolutions: LeNet-5's conv1 (5x5 1->6, batch 64, 32 px),
  EfficientNet/MobileNet's stem (3x3/2 3->32, batch 16, 224 px) and ResNet's (7x7/2 3->64),
  forward and weight gradient, XLA's convolution vs ``jaxvision.layers.narrow_conv`` called
  directly (``conv2d`` uses it for the first two only: ``narrow_conv.MAX_TERMS``);
* LeNet-5's 2x2 max pooling backward, XLA's select-and-scatter vs ``tiled_max_pool``;
* the per-step example order of the device-held default job: two ``jax.random.permutation``
  draws of 4,000 vs a lookup in the epochs' table (``device_data.epoch_orders``).
"""

from __future__ import annotations

import argparse

import flax.linen as nn
import jax

from experiments.xla_cpu_conv.layer_parts import best_ms
from jaxvision.layers import conv2d, narrow_conv, tiled_max_pool
from jaxvision.layers.lowering import explicit_padding
from jaxvision.training import device_data

CONVS = (  # name, input (N, H, W, C), kernel (kh, kw, C, F), stride, padding
    ("LeNet-5 conv1", (64, 32, 32, 1), (5, 5, 1, 6), 1, "VALID"),
    ("EfficientNet stem", (16, 224, 224, 3), (3, 3, 3, 32), 2, "SAME"),
    ("ResNet stem", (16, 224, 224, 3), (7, 7, 3, 64), 2, [(3, 3), (3, 3)]),
)


def conv_rows(reps):
    key = jax.random.key(0)
    for name, xs, ws, s, pad in CONVS:
        x, w = jax.random.normal(key, xs), jax.random.normal(key, ws)
        pads = tuple(explicit_padding(pad, xs[1:3], ws[:2], (s, s), (1, 1)))
        forms = {
            "xla": lambda x, w, s=s, pad=pad: conv2d(x, w, strides=(s, s), padding=pad, impl="xla"),
            "cpu": lambda x, w, s=s, pads=pads: narrow_conv(x, w, (s, s), (1, 1), pads),
        }
        row = {}
        for impl, fwd in forms.items():
            dy = fwd(x, w)
            row[impl] = (best_ms(fwd, x, w, reps=reps),
                         best_ms(lambda x, w, g, f=fwd: jax.vjp(lambda k: f(x, k), w)[1](g)[0],
                                 x, w, dy, reps=reps))
        print(f"{name:18s} forward xla {row['xla'][0]:7.2f} cpu {row['cpu'][0]:7.2f} ms | "
              f"weight grad xla {row['xla'][1]:7.2f} cpu {row['cpu'][1]:7.2f} ms")


def pool_row(reps):
    x = jax.nn.relu(jax.random.normal(jax.random.key(1), (64, 28, 28, 6)))
    dy = jax.random.normal(jax.random.key(2), (64, 14, 14, 6))
    xla = best_ms(lambda x, g: jax.vjp(lambda a: nn.max_pool(a, (2, 2), (2, 2)), x)[1](g)[0],
                  x, dy, reps=reps)
    tiled = best_ms(lambda x, g: jax.vjp(lambda a: tiled_max_pool(a, (2, 2)), x)[1](g)[0],
                    x, dy, reps=reps)
    print(f"2x2 max pool backward (64, 28, 28, 6): select-and-scatter {xla:.2f} ms, "
          f"tiled {tiled:.2f} ms")


def order_row(reps):
    kw = dict(batch_size=64, num_examples=4000, seed=0)
    table = device_data.epoch_orders(num_examples=4000, num_epochs=10, seed=0)
    drawn = best_ms(lambda t: device_data.stream_indices(t, **kw)[0], 130, reps=reps)
    looked = best_ms(lambda t, o: device_data.stream_indices(t, orders=o, **kw)[0], 130, table,
                     reps=reps)
    print(f"example order of one batch (N = 4,000): drawn {drawn:.2f} ms, table {looked:.3f} ms")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args(argv)
    conv_rows(a.reps)
    pool_row(a.reps)
    order_row(a.reps)


if __name__ == "__main__":
    main()
