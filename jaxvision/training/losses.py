"""Classification losses, computed in float32 whatever the compute dtype."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def smooth_labels(labels: jax.Array, num_classes: int, label_smoothing: float = 0.0) -> jax.Array:
    """Targets (N, K) float32 from int labels (N,) or soft labels (N, K).

    Smoothing follows Szegedy et al. 2016 (and TF/Keras/timm): (1 - eps) * y + eps / K.
    """
    if labels.ndim == 1:
        labels = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    labels = labels.astype(jnp.float32)
    if label_smoothing:
        labels = labels * (1.0 - label_smoothing) + label_smoothing / num_classes
    return labels


def cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    *,
    label_smoothing: float = 0.0,
    class_weights: jax.Array | None = None,
) -> jax.Array:
    """Per-example softmax cross-entropy, float32 (N,).

    Args:
      logits: (N, K) any float dtype; cast to float32 before the softmax.
      labels: int (N,) class ids or float (N, K) soft labels (mixup/cutmix).
      label_smoothing: eps of uniform label smoothing.
      class_weights: optional float (K,); each example's loss is multiplied by the weight of its
        (soft) target: sum_k y_k w_k.
    """
    logits = logits.astype(jnp.float32)
    targets = smooth_labels(labels, logits.shape[-1], label_smoothing)
    loss = optax.softmax_cross_entropy(logits, targets)
    if class_weights is not None:
        y = labels if labels.ndim == 2 else jax.nn.one_hot(labels, logits.shape[-1])
        loss = loss * (y.astype(jnp.float32) @ class_weights.astype(jnp.float32))
    return loss


def masked_mean(values: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Mean of ``values`` (N,) over entries where ``mask`` (N,) is True (0 when none are)."""
    if mask is None:
        return jnp.mean(values)
    m = mask.astype(values.dtype)
    return jnp.sum(values * m) / jnp.maximum(jnp.sum(m), 1.0)
