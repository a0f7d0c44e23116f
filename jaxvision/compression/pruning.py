"""Gradual global magnitude pruning of a finished model: :func:`prune_finetune`.

The pruning machinery is a training feature (``--config.pruning.target_sparsity``), so it lives in
:mod:`jaxvision.training.pruning`; this module re-exports it and adds the post-training entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxvision.compression.fine_tuning import run_steps, top1
from jaxvision.training.pruning import (
    PruneState,
    apply_masks,
    default_prunable,
    global_magnitude_masks,
    polynomial_sparsity,
    prune,
    sparsity_report,
)

__all__ = [
    "PruneState",
    "apply_masks",
    "default_prunable",
    "global_magnitude_masks",
    "polynomial_sparsity",
    "prune",
    "prune_finetune",
    "sparsity_report",
]


def prune_finetune(
    model,
    variables: dict[str, Any],
    train_batches: Iterable[dict[str, Any]],
    *,
    target_sparsity: float,
    steps: int,
    learning_rate: float = 1e-3,
    begin_step: int = 0,
    end_step: int | None = None,
    update_every: int = 10,
    eval_batches: Iterable[dict[str, Any]] | None = None,
    optimizer: optax.GradientTransformation | None = None,
    prunable=default_prunable,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fine-tune ``variables`` while pruning gradually (Zhu & Gupta) to ``target_sparsity``.

    The schedule ramps from 0 at ``begin_step`` to the target at ``end_step`` (default 70% of
    ``steps``, leaving time to recover); the last mask update lands at or after ``end_step`` so the
    final sparsity is exactly the target. BatchNorm statistics are updated in training mode.
    ``optimizer`` defaults to Adam at ``learning_rate``. Evaluation batches (if given) must be a
    re-iterable (e.g. a list or an evaluation Pipeline).

    Returns (pruned variables, report with 'sparsity', 'top1_before', 'top1_after', ...).
    """
    end_step = int(0.7 * steps) if end_step is None else end_step
    if not 0 < end_step <= steps:
        raise ValueError(f"end_step ({end_step}) must be in (0, steps={steps}]")
    schedule = polynomial_sparsity(target_sparsity, begin_step=begin_step, end_step=end_step)
    # The mask is recomputed at multiples of update_every: make sure one falls on end_step.
    update_every = max(1, min(update_every, end_step - begin_step))
    while end_step % update_every:
        update_every -= 1
    tx = prune(
        optimizer or optax.adam(learning_rate),
        schedule,
        update_every=update_every,
        prunable=prunable,
    )
    params = variables["params"]
    batch_stats = variables.get("batch_stats") or {}
    opt_state = tx.init(params)

    def eval_fn(p, bs):
        return lambda x: model.apply({"params": p, "batch_stats": bs}, x, train=False)

    report: dict[str, Any] = {"target_sparsity": float(target_sparsity), "steps": int(steps)}
    if eval_batches is not None:
        report["top1_before"] = top1(eval_fn(params, batch_stats), eval_batches)
    report["sparsity_before"] = sparsity_report(params, prunable)["sparsity"]

    @jax.jit
    def step(params, batch_stats, opt_state, images, labels, mask, rng):
        def loss_fn(p):
            r1, r2 = jax.random.split(rng)
            logits, new = model.apply(
                {"params": p, "batch_stats": batch_stats},
                images,
                train=True,
                rngs={"dropout": r1, "drop_path": r2},
                mutable=["batch_stats"],
            )
            ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
            loss = jnp.sum(ce * mask) / jnp.maximum(mask.sum(), 1)
            return loss, new.get("batch_stats", batch_stats)

        (loss, new_bs), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_bs, opt_state, loss

    params, batch_stats, opt_state, losses = run_steps(
        step, (params, batch_stats, opt_state), train_batches, steps, seed, record_every=10)
    out = {"params": params, "batch_stats": batch_stats}
    sp = sparsity_report(params, prunable)
    report.update(
        sparsity=sp["sparsity"],
        zeros=sp["zeros"],
        prunable=sp["prunable"],
        final_loss=losses[-1] if losses else float("nan"),
    )
    if eval_batches is not None:
        report["top1_after"] = top1(eval_fn(params, batch_stats), eval_batches)
    return out, report
