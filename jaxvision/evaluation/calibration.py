"""Temperature scaling (Guo et al. 2017): one scalar T > 0 fitted on validation logits.

T minimizes the mean NLL of softmax(z / T). It is optimized over log T (so T stays positive)
with optax's L-BFGS (zoom line search), in float32 on the device. Dividing by T > 0 never changes
the argmax, so accuracy is unchanged; NLL on the fitting split can only go down.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxvision.evaluation import metrics as metrics_lib

log = logging.getLogger(__name__)  # jaxvision.*: shown as 'jaxvision: warning: ...'

# T is kept in [1e-2, 1e2]: outside that range the logits are (near-)separable on the fitting
# split and the optimum runs off to 0 or infinity, which is a fitting artefact, not calibration.
LOG_T_BOUND = float(np.log(100.0))


def mean_nll(logits, labels, mask=None, temperature=1.0) -> jax.Array:
    """Mean NLL of softmax(logits / T) over unmasked examples; float32 scalar. Jit-able."""
    labels = jnp.asarray(labels, jnp.int32)
    w = jnp.ones(labels.shape, jnp.float32) if mask is None else jnp.asarray(mask, jnp.float32)
    # Masked rows may hold NaN/Inf logits: zero them (NaN * weight 0 would still be NaN).
    z = jnp.where(w[:, None] > 0, jnp.asarray(logits, jnp.float32), 0.0)
    z = z / jnp.asarray(temperature, jnp.float32)
    labels = jnp.where(w > 0, labels, 0)
    log_p = jax.nn.log_softmax(z, axis=-1)
    nll = -jnp.take_along_axis(log_p, labels[:, None], axis=-1)[:, 0]
    return jnp.sum(nll * w) / jnp.maximum(jnp.sum(w), 1.0)


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _fit_log_t(logits, labels, mask, max_iter: int, tol: float):
    def fun(log_t):
        return mean_nll(logits, labels, mask, jnp.exp(log_t))

    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(fun)

    def step(carry):
        log_t, state, _ = carry
        value, grad = value_and_grad(log_t, state=state)
        updates, state = opt.update(grad, state, log_t, value=value, grad=grad, value_fn=fun)
        log_t = jnp.clip(optax.apply_updates(log_t, updates), -LOG_T_BOUND, LOG_T_BOUND)
        return log_t, state, grad

    def cont(carry):
        _, state, grad = carry
        count = optax.tree_utils.tree_get(state, "count")
        return (count == 0) | ((count < max_iter) & (jnp.abs(grad) > tol))

    log_t0 = jnp.zeros((), jnp.float32)
    init = (log_t0, opt.init(log_t0), jnp.asarray(jnp.inf, jnp.float32))
    log_t, state, grad = jax.lax.while_loop(cont, step, init)
    return log_t, optax.tree_utils.tree_get(state, "count"), grad


def fit_temperature(logits, labels, mask=None, *, max_iter: int = 100, tol: float = 1e-6
                    ) -> float:
    """Temperature T minimizing the NLL of softmax(logits / T) on (logits, labels, mask).

    Args:
      logits: (N, K) float validation logits (numpy or jax).
      labels: (N,) int labels.
      mask: (N,) bool or None; False rows are ignored.
      max_iter: L-BFGS iterations at most; tol: stop when |dNLL/dlog T| <= tol.
    Returns: T as a Python float (T > 1 softens over-confident models).

    Logs a warning when the fit is degenerate: the unmasked logits are separable (each label is
    its row's strict argmax) or T reached its bound [1e-2, 1e2]; and when L-BFGS stopped with
    |dNLL/dlog T| > 1e-3. Raises ValueError for bad shapes or an all-False mask.
    """
    logits = jnp.asarray(logits, jnp.float32)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, num_classes), got {logits.shape}")
    labels = jnp.asarray(labels)
    if labels.shape != logits.shape[:1]:
        raise ValueError(f"labels must have shape ({logits.shape[0]},), got {labels.shape}")
    mask = jnp.ones(labels.shape, bool) if mask is None else jnp.asarray(mask, bool)
    if not bool(jnp.any(mask)):
        raise ValueError("cannot fit a temperature on zero examples (the mask is all False)")
    log_t, iters, grad = _fit_log_t(logits, labels, mask, max_iter=max_iter, tol=tol)
    log_t = float(log_t)
    if _separable(logits, labels, mask) or abs(log_t) >= LOG_T_BOUND - 1e-6:
        log.warning(
            "temperature scaling is degenerate here (T=%.3g): the validation logits are "
            "(near-)separable (every example's label is its top class, or T hit its bound "
            "1e-2/1e2), so the NLL falls towards T -> 0 and T is not an optimum; fit it on a "
            "larger validation split.", np.exp(log_t))
    elif abs(float(grad)) > 1e-3:
        log.warning("temperature scaling stopped after %d iterations with |grad|=%.2g",
                        int(iters), float(grad))
    return float(np.exp(log_t))


def _separable(logits, labels, mask) -> bool:
    """Every unmasked example's label is its strict argmax: the NLL then falls monotonically as
    T -> 0, so the fitted T is wherever the optimizer stopped, not an optimum."""
    z = jnp.where(mask[:, None], logits, 0.0)
    true = jnp.take_along_axis(z, jnp.where(mask, labels, 0).astype(jnp.int32)[:, None], -1)
    others = jnp.where(jax.nn.one_hot(jnp.where(mask, labels, 0), z.shape[-1], dtype=bool),
                       -jnp.inf, z)
    return bool(jnp.all(~mask | (true[:, 0] > jnp.max(others, axis=-1))))


def apply_temperature(logits, temperature: float):
    """logits / T (the calibrated logits; softmax of them are the calibrated probabilities)."""
    return jnp.asarray(logits, jnp.float32) / jnp.float32(temperature)


@dataclasses.dataclass
class TemperatureScaling:
    """Result of ``temperature_scale``.

    Attributes:
      temperature: the fitted T.
      val_nll_before / val_nll_after: NLL on the fitting (validation) split at T=1 and at T.
      before / after: ``classification_metrics`` of the evaluated split at T=1 and at T (None when
        no evaluation logits were given).
    """

    temperature: float
    val_nll_before: float
    val_nll_after: float
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None


def temperature_scale(val_logits, val_labels, val_mask=None, logits=None, labels=None,
                      mask=None, *, num_bins: int = 15) -> TemperatureScaling:
    """Fit T on validation logits and report the metrics of ``logits`` before and after.

    ``logits``/``labels``/``mask`` are the split being evaluated (e.g. test); leave them out to
    fit only.
    """
    t = fit_temperature(val_logits, val_labels, val_mask)
    result = TemperatureScaling(
        temperature=t,
        val_nll_before=float(mean_nll(val_logits, val_labels, val_mask, 1.0)),
        val_nll_after=float(mean_nll(val_logits, val_labels, val_mask, t)),
    )
    if logits is not None:
        result.before = metrics_lib.classification_metrics(logits, labels, mask, num_bins)
        result.after = metrics_lib.classification_metrics(
            apply_temperature(logits, t), labels, mask, num_bins)
    return result
