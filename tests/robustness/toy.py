"""A tiny CNN trained on a synthetic "bright square" task, shared by the research-tool tests.

Images are 16x16x1 pixels: dim noise in [0, 0.3]; class 1 images carry a bright 4x4 square at a
random place, class 0 images carry none. Inputs are normalized with mean 0.5, std 0.25 so that
the tools' handling of the data normalization is exercised.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from tests.optimized import run_optimized

MEAN, STD = 0.5, 0.25
SIZE, SQUARE = 16, 4


def make_squares(n: int, seed: int = 0):
    """pixels (n, 16, 16, 1) float32 in [0, 1], labels (n,) int32, square top-left corners (n, 2)."""
    rng = np.random.default_rng(seed)
    pixels = rng.uniform(0.0, 0.3, size=(n, SIZE, SIZE, 1)).astype(np.float32)
    labels = (np.arange(n) % 2).astype(np.int32)
    corners = rng.integers(0, SIZE - SQUARE + 1, size=(n, 2))
    for i in range(n):
        if labels[i]:
            r, c = corners[i]
            pixels[i, r : r + SQUARE, c : c + SQUARE] = 0.9
    return pixels, labels, corners


def normalize(pixels):
    return (pixels - MEAN) / STD


class TinyCNN(nn.Module):
    """conv(8) -> conv(16) 'features' -> global mean -> Dense 'head'; follows the model contract."""

    num_classes: int = 2

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Conv(8, (3, 3), name="conv1")(x))
        x = nn.relu(nn.Conv(16, (3, 3), name="features")(x))
        x = x.mean(axis=(1, 2))
        return nn.Dense(self.num_classes, name="head")(x)


@dataclasses.dataclass
class ToyRun:
    """Stands in for ``jaxvision.training.checkpoints.load_run``'s result."""

    model: Any
    variables: Any
    config: Any
    class_names: list
    step: int = 0


@functools.cache
def trained_run(steps: int = 150, seed: int = 0) -> ToyRun:
    model = TinyCNN()
    pixels, labels, _ = make_squares(512, seed=seed)
    x, y = jnp.asarray(normalize(pixels)), jnp.asarray(labels)
    variables = model.init(jax.random.key(seed), x[:1])
    tx = optax.adam(1e-2)
    opt_state = tx.init(variables["params"])

    def step(i, carry):
        params, opt_state = carry

        def loss(p):
            xb = jax.lax.dynamic_slice_in_dim(x, (i * 64) % 512, 64)
            yb = jax.lax.dynamic_slice_in_dim(y, (i * 64) % 512, 64)
            logits = model.apply({"params": p}, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        updates, opt_state = tx.update(jax.grad(loss)(params), opt_state)
        return optax.apply_updates(params, updates), opt_state

    # The whole training is one compiled loop: no per-step dispatch on a busy CPU; optimized,
    # as it runs 150 steps (46 s at the tests' -O0, 5 s here).
    params, opt_state = run_optimized(lambda p, o: jax.lax.fori_loop(0, steps, step, (p, o)),
                                      variables["params"], opt_state)
    config = {"data": {"mean": [MEAN], "std": [STD]}}
    return ToyRun(model, {"params": params}, config, ["plain", "square"])


def batches(n: int = 256, batch_size: int = 64, seed: int = 1):
    """A finite evaluation pipeline over fresh toy images (normalized), the last batch padded."""
    pixels, labels, _ = make_squares(n, seed=seed)
    x = normalize(pixels)
    out = []
    for s in range(0, n, batch_size):
        xb, yb = x[s : s + batch_size], labels[s : s + batch_size]
        pad = batch_size - len(yb)
        mask = np.concatenate([np.ones(len(yb), bool), np.zeros(pad, bool)])
        out.append(
            {
                "image": np.concatenate([xb, np.zeros((pad,) + xb.shape[1:], np.float32)]),
                "label": np.concatenate([yb, np.zeros(pad, np.int32)]),
                "mask": mask,
            }
        )
    return out
