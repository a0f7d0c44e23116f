"""Knowledge distillation (Hinton et al. 2015): a student learns from a teacher's softened logits.

``loss = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) * CE(s, labels)``;
the ``T^2`` keeps the soft term's gradient scale independent of the temperature.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import optax

__all__ = ["distill", "distillation_loss"]


def distillation_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    labels: jax.Array | None,
    *,
    temperature: float = 4.0,
    alpha: float = 0.9,
    mask: jax.Array | None = None,
) -> jax.Array:
    """Mean over (masked) examples of the distillation objective, float32 scalar.

    Args:
      student_logits, teacher_logits: (N, K), any float dtype (computed in float32).
      labels: int (N,) or None (pure distillation, alpha must then be 1).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    s = student_logits.astype(jnp.float32)
    t = jax.lax.stop_gradient(teacher_logits.astype(jnp.float32))
    log_p_s = jax.nn.log_softmax(s / temperature)
    p_t = jax.nn.softmax(t / temperature)
    kl = jnp.sum(p_t * (jnp.log(jnp.clip(p_t, 1e-30)) - log_p_s), axis=-1) * temperature**2
    per_example = alpha * kl
    if alpha < 1.0:
        if labels is None:
            raise ValueError("labels are needed when alpha < 1 (the label term)")
        per_example = per_example + (1 - alpha) * optax.softmax_cross_entropy_with_integer_labels(
            s, labels
        )
    if mask is None:
        return per_example.mean()
    mask = mask.astype(jnp.float32)
    return jnp.sum(per_example * mask) / jnp.maximum(mask.sum(), 1.0)


def distill(
    teacher_model,
    teacher_variables: dict[str, Any],
    student_model,
    student_variables: dict[str, Any],
    train_batches: Iterable[dict[str, Any]],
    *,
    steps: int,
    learning_rate: float = 1e-3,
    temperature: float = 4.0,
    alpha: float = 0.9,
    optimizer: optax.GradientTransformation | None = None,
    eval_batches: Iterable[dict[str, Any]] | None = None,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train the student on the teacher's outputs for ``steps`` batches (student BatchNorm in
    training mode, teacher in evaluation mode).

    Returns (student variables, report with 'teacher_top1', 'student_top1_before/after', 'losses').
    """
    from jaxvision.compression.fine_tuning import run_steps, top1

    tx = optimizer or optax.adam(learning_rate)
    params = student_variables["params"]
    batch_stats = student_variables.get("batch_stats") or {}
    opt_state = tx.init(params)

    @jax.jit
    def step(params, batch_stats, opt_state, images, labels, mask, rng):
        teacher = teacher_model.apply(teacher_variables, images, train=False)

        def loss_fn(p):
            r1, r2 = jax.random.split(rng)
            logits, new = student_model.apply(
                {"params": p, "batch_stats": batch_stats},
                images,
                train=True,
                rngs={"dropout": r1, "drop_path": r2},
                mutable=["batch_stats"],
            )
            loss = distillation_loss(
                logits, teacher, labels, temperature=temperature, alpha=alpha, mask=mask
            )
            return loss, new.get("batch_stats", batch_stats)

        (loss, new_bs), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_bs, opt_state, loss

    report: dict[str, Any] = {"temperature": temperature, "alpha": alpha, "steps": steps}
    if eval_batches is not None:
        report["teacher_top1"] = top1(
            lambda x: teacher_model.apply(teacher_variables, x, train=False), eval_batches
        )
        report["student_top1_before"] = top1(
            lambda x: student_model.apply(
                {"params": params, "batch_stats": batch_stats}, x, train=False
            ),
            eval_batches,
        )
    params, batch_stats, opt_state, losses = run_steps(
        step, (params, batch_stats, opt_state), train_batches, steps, seed)
    report["losses"] = [losses[0], losses[-1]] if losses else []
    student = {"params": params, "batch_stats": batch_stats}
    if eval_batches is not None:
        report["student_top1_after"] = top1(
            lambda x: student_model.apply(student, x, train=False), eval_batches
        )
    return student, report
