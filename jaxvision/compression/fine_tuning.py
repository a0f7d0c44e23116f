"""The small training and evaluation loop compression shares: masked top-1 of an apply function
and a step runner over cycled batches (used by pruning fine-tuning and distillation)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def top1(apply_fn, batches: Iterable[dict[str, Any]]) -> float:
    """Masked top-1 accuracy of ``apply_fn(images) -> logits`` over finite ``batches``."""
    apply_fn = jax.jit(apply_fn)
    correct = count = 0.0
    for b in batches:
        y = np.asarray(b["label"])
        mask = np.asarray(b.get("mask", np.ones(y.shape, bool)), bool)
        pred = np.asarray(jnp.argmax(apply_fn(jnp.asarray(b["image"])), -1))
        correct += float(((pred == y) & mask).sum())
        count += float(mask.sum())
    if not count:
        raise ValueError("top1: the evaluation batches hold no example")
    return correct / count


def _cycle(batches) -> Iterator[dict[str, Any]]:
    """An endless iterator over a (finite or infinite) iterable of batches."""
    while True:
        empty = True
        for b in batches:
            empty = False
            yield b
        if empty:
            raise ValueError("the training batches are empty")


def run_steps(step, carry, train_batches, steps: int, seed: int, *, record_every: int = 1):
    """Run ``step(params, batch_stats, opt_state, image, label, mask, rng) -> (params,
    batch_stats, opt_state, loss)`` for ``steps`` batches (cycling ``train_batches``).

    Returns (params, batch_stats, opt_state, losses recorded every ``record_every`` steps and at
    the last). The loss is fetched only when recorded, so steps between stay asynchronous.
    """
    params, batch_stats, opt_state = carry
    rng = jax.random.key(seed)
    losses = []
    it = _cycle(train_batches)
    for i in range(steps):
        b = next(it)
        y = jnp.asarray(b["label"])
        mask = jnp.asarray(b.get("mask", np.ones(y.shape, bool)), jnp.float32)
        params, batch_stats, opt_state, loss = step(
            params, batch_stats, opt_state, jnp.asarray(b["image"]), y, mask,
            jax.random.fold_in(rng, i))
        if i % record_every == 0 or i == steps - 1:
            losses.append(float(loss))
    return params, batch_stats, opt_state, losses
