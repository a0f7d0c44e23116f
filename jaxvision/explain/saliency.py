"""Gradient saliency: vanilla gradients (Simonyan et al. 2014) and integrated gradients
(Sundararajan et al. 2017).

``logits_fn(images) -> logits (N, K)`` is any closure over a model, e.g.
``lambda x: model.apply(variables, x, train=False)``; images are (N, H, W, C) float, normalized
as the model expects. Attributions are w.r.t. those model inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

__all__ = ["class_score_grad", "integrated_gradients", "saliency_map", "vanilla_gradients"]


def _targets(logits_fn, images, target):
    if target is None:
        return jnp.argmax(logits_fn(images), axis=-1)
    return jnp.broadcast_to(jnp.asarray(target, jnp.int32), images.shape[:1])


def class_score_grad(logits_fn: Callable, images: jax.Array, target: jax.Array) -> jax.Array:
    """d logit[target] / d images, per example (models in eval mode treat examples independently)."""

    def score(x):
        logits = logits_fn(x).astype(jnp.float32)
        return jnp.take_along_axis(logits, target[:, None], axis=-1).sum()

    return jax.grad(score)(images)


def vanilla_gradients(logits_fn: Callable, images: jax.Array, target=None) -> jax.Array:
    """Gradient of the target class logit (default: the predicted class) w.r.t. the input.

    Returns float32 (N, H, W, C).
    """
    images = jnp.asarray(images, jnp.float32)
    return class_score_grad(logits_fn, images, _targets(logits_fn, images, target))


def integrated_gradients(
    logits_fn: Callable,
    images: jax.Array,
    target=None,
    *,
    baseline: jax.Array | None = None,
    steps: int = 32,
) -> jax.Array:
    """Integrated gradients along the straight path from ``baseline`` to ``images``.

    Uses the trapezoidal rule with ``steps`` intervals, so that
    ``attributions.sum() ~= logit(images) - logit(baseline)`` (completeness).

    Args:
      baseline: model-space image(s) broadcastable to ``images``; default zeros (the mean image
        under the data normalization). Pass ``normalization.to_model(0)`` for a black image.
    Returns:
      float32 (N, H, W, C) attributions for the target class.
    """
    if steps < 1:
        raise ValueError(f"integrated_gradients needs steps >= 1, got {steps}")
    images = jnp.asarray(images, jnp.float32)
    baseline = (
        jnp.zeros_like(images) if baseline is None else jnp.broadcast_to(baseline, images.shape)
    )
    target = _targets(logits_fn, images, target)
    alphas = jnp.linspace(0.0, 1.0, steps + 1)
    weights = jnp.full((steps + 1,), 1.0 / steps).at[0].set(0.5 / steps).at[-1].set(0.5 / steps)

    def body(total, aw):
        a, w = aw
        g = class_score_grad(logits_fn, baseline + a * (images - baseline), target)
        return total + w * g, None

    avg_grad, _ = jax.lax.scan(body, jnp.zeros_like(images), (alphas, weights))
    return (images - baseline) * avg_grad


def saliency_map(attributions: jax.Array) -> jax.Array:
    """(N, H, W, C) attributions -> (N, H, W) heat map in [0, 1]: max |.| over channels, scaled
    per image."""
    heat = jnp.max(jnp.abs(attributions), axis=-1)
    peak = jnp.max(heat, axis=(1, 2), keepdims=True)
    return heat / jnp.maximum(peak, 1e-12)
