"""Pure train and eval steps, shared by the jit (Mesh) and the pmap paths.

``make_train_step`` and ``make_eval_step`` close over plain values (the model, the schedule, numbers)
and return functions of arrays only. On the jit path the batch is one global array sharded over the
mesh's 'data' axis and XLA inserts the collectives; on the pmap path the same function runs per
device with ``axis_name='batch'``: BatchNorm statistics are averaged by the model (built with
``bn_axis_name='batch'``), and the loss, its gradients and the batch metrics are sums over the
global batch's valid rows divided by their global count (``psum`` of each device's sum and count),
so a masked (partial) batch weighs every valid row alike on both paths. A ``pmean`` of per-device
means would weigh a device with fewer valid rows as much as a full one.

Measured (experiments/pmap_vs_jit, 8 simulated devices): on the default job pmap and jit give
bit-identical parameters step by step, also across a padded batch (a pmean of per-device means put
them 1.3e-4 apart at that step). The random keys differ by design (pmap folds the device index into
the step's key), so dropout, drop path and mixup draw other numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxvision.training import losses, precision
from jaxvision.training.state import TrainState


def make_train_step(
    model,
    *,
    num_classes: int,
    schedule: Callable | None = None,
    label_smoothing: float = 0.0,
    class_weights=None,
    ema_decay: float = 0.0,
    grad_accum_steps: int = 1,
    axis_name: str | None = None,
    augment_fn: Callable | None = None,
    objective: Callable | None = None,
) -> Callable:
    """Returns ``train_step(state, batch, rng=None) -> (state, metrics)``.

    batch: {'image': float32 (B, H, W, C), 'label': int32 (B,), 'mask': bool (B,) optional}
      (per device on the pmap path). ``rng`` (uint32 (2,)) defaults to ``state.rng``; the step's key is
      ``fold_in(rng, state.step)`` (and the device index under pmap), so resumed runs draw the same keys.
    augment_fn: optional ``(rng, images, labels) -> (images, targets)``, targets int (B,) or soft
      float32 (B, K) (``data.augment.batch_augment``: random erasing, mixup/cutmix).
    objective: optional ``(apply, images, targets) -> (per_example_loss (B,), logits, new_vars)``
      replacing the cross-entropy (e.g. distillation from a teacher,
      ``compression.distillation.hard_distillation_objective``); ``apply(x, **apply_kwargs)`` is
      the student's training-mode ``model.apply`` with this step's variables and rngs.
    metrics: float32 scalars 'loss', 'accuracy', 'grad_norm', 'lr' (+ 'loss_scale' and 'skipped',
      1.0 for a step skipped for non-finite gradients, with float16).
    """
    k = max(1, int(grad_accum_steps))
    cw = None if class_weights is None else jnp.asarray(class_weights, jnp.float32)

    def train_step(state: TrainState, batch, rng=None):
        key = jax.random.fold_in(state.rng if rng is None else rng, state.step)
        if axis_name is not None:
            key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
        k_aug, k_drop, k_path = jax.random.split(key, 3)
        images, labels = batch["image"], batch["label"]
        mask = batch.get("mask")
        valid = _valid_rows(mask, labels.shape[0])
        count = _global_sum(jnp.sum(valid), axis_name)  # valid rows of the global batch
        targets = labels
        if augment_fn is not None:
            images, targets = augment_fn(k_aug, images, labels)
        scale = state.loss_scale["scale"] if state.loss_scale is not None else None

        def loss_fn(params):
            variables = {"params": params, "batch_stats": state.batch_stats}

            def apply(x, **kw):
                return model.apply(variables, x, train=True, mutable=["batch_stats"],
                                   rngs={"dropout": k_drop, "drop_path": k_path}, **kw)

            if objective is None:
                logits, new_vars = apply(images)
                per_example = losses.cross_entropy(
                    logits, targets, label_smoothing=label_smoothing, class_weights=cw
                )
            else:
                per_example, logits, new_vars = objective(apply, images, targets)
            # This device's share of the global mean: the global sum of these is the mean.
            loss = _share_of_mean(per_example, valid, count)
            scaled = loss * scale if scale is not None else loss
            return scaled, (loss, logits, new_vars.get("batch_stats", state.batch_stats))

        grads, (loss, logits, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
        grads, loss = _global_sum((grads, loss), axis_name)
        if scale is not None:
            grads = jax.tree.map(lambda g: g / scale, grads)

        updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            batch_stats=batch_stats,
            opt_state=opt_state,
            ema_params=_ema_update(state, params, ema_decay, k),
        )
        metrics = {"loss": loss}
        if state.loss_scale is not None:
            metrics["loss_scale"] = state.loss_scale["scale"]
            new_state, metrics["skipped"] = _skip_non_finite(state, new_state, grads)
        hits = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
        metrics["accuracy"] = _global_sum(_share_of_mean(hits, valid, count), axis_name)
        metrics["grad_norm"] = optax.tree.norm(grads)
        if schedule is not None:
            metrics["lr"] = jnp.asarray(schedule(state.step // k), jnp.float32)
        # Every metric is now the same on every device (global sums, or functions of them).
        return new_state, metrics

    return train_step


def _ema_update(state: TrainState, params, ema_decay: float, k: int):
    """The EMA parameters after this step (``None`` without EMA). TF ExponentialMovingAverage
    (num_updates=n): decay min(ema_decay, (1 + n) / (10 + n)), applied when the optimizer actually
    updates (every k steps with gradient accumulation)."""
    if state.ema_params is None:
        return None
    n = ((state.step + 1) // k).astype(jnp.float32)
    d = jnp.minimum(ema_decay, (1.0 + n) / (10.0 + n))
    updated = (state.step + 1) % k == 0
    new_ema = jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, state.ema_params, params)
    return precision.select_tree(updated, new_ema, state.ema_params)


def _skip_non_finite(state: TrainState, new_state: TrainState, grads):
    """Dynamic loss scaling (float16): a step with non-finite gradients changes nothing but the
    step counter and the scale. Returns (state, skipped float32 scalar)."""
    finite = precision.all_finite(grads)
    new_state = precision.select_tree(finite, new_state, state.replace(step=state.step + 1))
    new_state = new_state.replace(loss_scale=precision.update_loss_scale(state.loss_scale, finite))
    return new_state, (~finite).astype(jnp.float32)


def _valid_rows(mask, batch_size: int) -> jax.Array:
    """float32 (B,): 1 for rows that count, 0 for padding (all 1 without a mask)."""
    if mask is None:
        return jnp.ones((batch_size,), jnp.float32)
    return mask.astype(jnp.float32)


def _global_sum(tree, axis_name: str | None):
    """Sum over the pmap axis (identity on the jit path, whose arrays are already global)."""
    return tree if axis_name is None else jax.lax.psum(tree, axis_name)


def _share_of_mean(values, valid, count) -> jax.Array:
    """sum(values * valid) / count, count floored at 1 (0 when no row is valid), float32."""
    return jnp.sum(values.astype(jnp.float32) * valid) / jnp.maximum(count, 1.0)


def make_eval_step(model, *, num_classes: int, use_ema: bool = False, axis_name: str | None = None,
                   num_bins: int = 15) -> Callable:
    """Returns ``eval_step(state, batch) -> metric sums`` (jaxvision.evaluation.metrics state) of
    one batch; sums from batches and devices add up with ``metrics.merge_states`` / ``psum``."""
    from jaxvision.evaluation import metrics as eval_metrics

    def eval_step(state: TrainState, batch):
        logits = model.apply(state.variables(use_ema), batch["image"], train=False)
        sums = eval_metrics.update_state(
            eval_metrics.init_state(num_classes, num_bins=num_bins),
            logits.astype(jnp.float32),
            batch["label"],
            batch.get("mask"),
        )
        if axis_name is not None:
            sums = jax.lax.psum(sums, axis_name)
        return sums

    return eval_step
