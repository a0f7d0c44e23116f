"""Model compression: gradual global magnitude pruning, post-training int8 quantization and
knowledge distillation, each with a one-call entry that reports before/after numbers.

    python -m jaxvision.compression prune --workdir RUN --sparsity 0.8 --steps 500 --output OUT
    python -m jaxvision.compression quantize --workdir RUN [--output OUT]
    python -m jaxvision.compression distill --teacher RUN --config configs/<student>.py --output OUT
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvision.compression import distillation
from jaxvision.compression.distillation import distill, distillation_loss
from jaxvision.compression.quantization import (
    calibrate_activations,
    dequantize,
    quantize_params,
    quantized_apply,
    stored_size,
)
from jaxvision.training.pruning import (
    apply_masks,
    default_prunable,
    global_magnitude_masks,
    polynomial_sparsity,
    prune,
    sparsity_report,
)

__all__ = [
    "apply_masks",
    "calibrate_activations",
    "default_prunable",
    "dequantize",
    "distill",
    "distillation",
    "distillation_loss",
    "global_magnitude_masks",
    "polynomial_sparsity",
    "prune",
    "prune_finetune",
    "quantize_params",
    "quantize_run",
    "quantized_apply",
    "sparsity_report",
    "stored_size",
    "top1",
]


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


def quantize_run(
    model,
    variables: dict[str, Any],
    eval_batches: Iterable[dict[str, Any]] | None = None,
    *,
    calibration_batches: Iterable[dict[str, Any]] | None = None,
    num_calibration_batches: int = 4,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Post-training int8 quantization with a before/after report.

    Returns (quantized variables {'params' (int8 kernels + scales), 'batch_stats'}, report with
    'size_bytes_before/after', 'compression', 'top1_before', 'top1_int8_weights' and, when
    ``calibration_batches`` are given, 'top1_int8_weights_activations' and 'activation_ranges').
    """
    qvars = {
        "params": quantize_params(variables["params"]),
        "batch_stats": variables.get("batch_stats") or {},
    }
    report: dict[str, Any] = {
        "size_bytes_before": stored_size(variables),
        "size_bytes_after": stored_size(qvars),
    }
    report["compression"] = report["size_bytes_before"] / report["size_bytes_after"]
    ranges = None
    if calibration_batches is not None:
        ranges = calibrate_activations(
            model, variables, calibration_batches, num_batches=num_calibration_batches
        )
        report["activation_ranges"] = ranges
    if eval_batches is not None:
        report["top1_before"] = top1(lambda x: model.apply(variables, x, train=False), eval_batches)
        report["top1_int8_weights"] = top1(lambda x: quantized_apply(model, qvars, x), eval_batches)
        if ranges is not None:
            report["top1_int8_weights_activations"] = top1(
                lambda x: quantized_apply(model, qvars, x, activation_ranges=ranges), eval_batches
            )
    return qvars, report
