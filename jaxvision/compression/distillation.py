"""Knowledge distillation: a student learns from a teacher.

* Soft (Hinton et al. 2015): ``loss = alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) +
  (1 - alpha) * CE(s, labels)``; the ``T^2`` keeps the soft term's gradient scale independent of
  the temperature. ``distill`` runs it as a short fine-tuning loop (``python -m
  jaxvision.compression distill``).
* Hard, DeiT's (Touvron et al. 2021, eq. 2 and sec. 5.2): ``loss = (1 - alpha) * CE(s_cls, y) +
  alpha * CE(s_dist, argmax t)`` with alpha 0.5: the class head learns the true (smoothed, mixed)
  labels, the distillation token's head the teacher's hard decisions on the same augmented
  images. ``train_with_teacher`` trains a recipe that has ``config.distill`` (e.g.
  ``configs/imagenet_deit_s_distilled.py``) through the training loop with this objective.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "distill",
    "distillation_loss",
    "hard_distillation_loss",
    "hard_distillation_objective",
    "load_teacher",
    "train_with_teacher",
]


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
    per_example = alpha * _soft_kl(s, teacher_logits, temperature)
    if alpha < 1.0:
        if labels is None:
            raise ValueError("labels are needed when alpha < 1 (the label term)")
        per_example = per_example + (1 - alpha) * optax.softmax_cross_entropy_with_integer_labels(
            s, labels
        )
    return _masked_mean(per_example, mask)


def _masked_mean(per_example, mask):
    if mask is None:
        return per_example.mean()
    mask = mask.astype(jnp.float32)
    return jnp.sum(per_example * mask) / jnp.maximum(mask.sum(), 1.0)


def _soft_kl(student_logits, teacher_logits, temperature: float) -> jax.Array:
    """Per example T^2 * KL(softmax(t / T) || softmax(s / T)), float32 (N,); no gradient to t."""
    s = student_logits.astype(jnp.float32)
    t = jax.lax.stop_gradient(teacher_logits.astype(jnp.float32))
    log_p_s = jax.nn.log_softmax(s / temperature)
    p_t = jax.nn.softmax(t / temperature)
    return jnp.sum(p_t * (jnp.log(jnp.clip(p_t, 1e-30)) - log_p_s), axis=-1) * temperature**2


def hard_distillation_loss(
    class_logits: jax.Array,
    distillation_logits: jax.Array,
    targets: jax.Array,
    teacher_logits: jax.Array,
    *,
    alpha: float = 0.5,
    label_smoothing: float = 0.0,
) -> jax.Array:
    """DeiT's hard-label distillation, per example, float32 (N,):
    ``(1 - alpha) * CE(class_logits, targets) + alpha * CE(distillation_logits, argmax teacher)``.

    Args:
      class_logits, distillation_logits: (N, K) student logits of the class and distillation
        heads (the same array for a student with one head), any float dtype.
      targets: int (N,) labels or float (N, K) soft labels (mixup/cutmix); ``label_smoothing``
        applies to them only: the teacher's decisions are used as they are (DeiT's
        ``DistillationLoss``).
      teacher_logits: (N, K); only its argmax is used (no gradient).
      alpha: weight of the teacher term (DeiT: 0.5).
    Raises ValueError when the teacher's class count differs from the student's.
    """
    from jaxvision.training import losses

    if teacher_logits.shape[-1] != distillation_logits.shape[-1]:
        raise ValueError(f"the teacher has {teacher_logits.shape[-1]} classes, the student "
                         f"{distillation_logits.shape[-1]}: distil from a teacher trained on the "
                         "student's classes")
    teacher_labels = jnp.argmax(jax.lax.stop_gradient(teacher_logits), axis=-1)
    base = losses.cross_entropy(class_logits, targets, label_smoothing=label_smoothing)
    return (1.0 - alpha) * base + alpha * losses.cross_entropy(distillation_logits, teacher_labels)


def _is_head(module, method_name: str) -> bool:
    return method_name == "__call__" and module.name in ("head", "head_dist")


def hard_distillation_objective(teacher_apply: Callable[[jax.Array], jax.Array], *,
                                alpha: float = 0.5, label_smoothing: float = 0.0) -> Callable:
    """The training-loop objective (``steps.make_train_step(objective=...)``) of DeiT's hard
    distillation: the teacher (``teacher_apply(images) -> logits``, evaluation mode) sees the
    student's augmented batch; a student with a distillation head (``head_dist``, e.g.
    ``deit_s_distilled``) feeds it the teacher's labels and its class head ``head`` the true
    ones; a student with one head gets both terms on its logits. The logits returned for the
    accuracy metric are the model's output (the two heads' mean for DeiT)."""

    def objective(apply, images, targets):
        teacher = teacher_apply(images)
        logits, new_vars = apply(images, capture_intermediates=_is_head)
        heads = dict(new_vars).pop("intermediates", {})
        cls = heads["head"]["__call__"][0] if "head" in heads else logits
        dist = heads["head_dist"]["__call__"][0] if "head_dist" in heads else cls
        per_example = hard_distillation_loss(cls, dist, targets, teacher, alpha=alpha,
                                             label_smoothing=label_smoothing)
        return per_example, logits, {"batch_stats": new_vars.get("batch_stats", {})}

    return objective


def load_teacher(config) -> Callable[[jax.Array], jax.Array]:
    """``teacher_apply(images) -> logits`` of the run in ``config.distill.teacher_workdir``
    (checkpoint ``config.distill.checkpoint``, 'latest' by default), evaluation mode, in
    ``config.dtype``. Raises FileNotFoundError (no run there) or ValueError (a teacher whose input
    normalization differs from the student's data pipeline)."""
    from jaxvision.training.checkpoints import load_run

    d = config.distill
    run = load_run(d.teacher_workdir, d.get("checkpoint") or "latest")
    mine = (tuple(config.data.get("mean") or ()), tuple(config.data.get("std") or ()))
    theirs = (tuple(run.config.data.get("mean") or ()), tuple(run.config.data.get("std") or ()))
    if mine != theirs:
        raise ValueError(f"the teacher {d.teacher_workdir!r} was trained on inputs normalized with "
                         f"mean/std {theirs}, the student's data uses {mine}: set config.data.mean "
                         "and config.data.std to the teacher's")
    dtype = jnp.dtype(config.dtype)
    model, variables = run.model.clone(dtype=dtype), run.variables
    # The teacher's variables are closed over: constants of the compiled train step.
    return lambda images: model.apply(variables, images.astype(dtype), train=False)


def train_with_teacher(config, workdir: str, **kwargs) -> dict:
    """``training.loop.train_and_evaluate`` of a recipe with ``config.distill`` (teacher run,
    ``alpha``), with DeiT's hard-distillation objective; ``kwargs`` go to the loop. Returns the
    loop's result."""
    from jaxvision.training import loop

    d = config.distill
    if not d.get("teacher_workdir"):
        raise ValueError("config.distill.teacher_workdir is required: the run directory of a trained "
                         "teacher (e.g. --config.distill.teacher_workdir=/tmp/jv_imagenet_convnext_t)")
    if config.data.get("class_weighting", "none") not in (None, "none"):
        raise ValueError("config.data.class_weighting does not apply to distillation: set it to 'none'")
    if d.get("type", "hard") != "hard":
        raise ValueError(f"config.distill.type={d.type!r}: the training loop supports DeiT's 'hard' "
                         "distillation (soft: python -m jaxvision.compression distill)")
    if not 0.0 <= float(d.get("alpha", 0.5)) <= 1.0:
        raise ValueError(f"config.distill.alpha must be in [0, 1], got {d.alpha}")
    objective = hard_distillation_objective(load_teacher(config), alpha=float(d.get("alpha", 0.5)),
                                            label_smoothing=float(config.label_smoothing))
    return loop.train_and_evaluate(config, workdir, objective=objective, **kwargs)


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
    kind: str = "soft",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train the student on the teacher's outputs for ``steps`` batches (student BatchNorm in
    training mode, teacher in evaluation mode).

    kind: 'soft' (Hinton: ``temperature``, ``alpha`` weights the KL term) or 'hard' (DeiT:
    ``hard_distillation_objective``, ``alpha`` weights the teacher's argmax labels, fed to the
    distillation head of a student that has one, e.g. ``deit_s_distilled``; DeiT uses 0.5).

    Returns (student variables, report with 'teacher_top1', 'student_top1_before/after', 'losses').
    """
    from jaxvision.compression.fine_tuning import run_steps, top1

    if kind not in ("soft", "hard"):
        raise ValueError(f"kind must be 'soft' or 'hard', got {kind!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    tx = optimizer or optax.adam(learning_rate)
    params = student_variables["params"]
    batch_stats = student_variables.get("batch_stats") or {}
    opt_state = tx.init(params)

    @jax.jit
    def step(params, batch_stats, opt_state, images, labels, mask, rng):
        teacher = teacher_model.apply(teacher_variables, images, train=False)

        def loss_fn(p):
            r1, r2 = jax.random.split(rng)

            def apply(x, **kw):
                return student_model.apply({"params": p, "batch_stats": batch_stats}, x, train=True,
                                           rngs={"dropout": r1, "drop_path": r2},
                                           mutable=["batch_stats"], **kw)

            if kind == "hard":
                objective = hard_distillation_objective(lambda _: teacher, alpha=alpha)
                per_example, _, new = objective(apply, images, labels)
                loss = _masked_mean(per_example, mask)
            else:
                logits, new = apply(images)
                loss = distillation_loss(
                    logits, teacher, labels, temperature=temperature, alpha=alpha, mask=mask
                )
            return loss, new.get("batch_stats", batch_stats)

        (loss, new_bs), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_bs, opt_state, loss

    report: dict[str, Any] = {"kind": kind, "temperature": temperature, "alpha": alpha,
                              "steps": steps}
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
