"""Adversarial attacks (FGSM, PGD; L-inf and L2) on images in the model's normalized space.

Models take images normalized by the data pipeline, ``x = (pixel - mean) / std`` with pixels in
``pixel_range`` (``(0, 1)`` for decoded images). An attack budget ``eps`` is stated in PIXEL units
(``eps=8/255 ~ 0.03`` is the usual ImageNet/CIFAR L-inf budget), so the attacks map the batch back
to pixels, perturb there, clip to the valid pixel range, and normalize again. That way the same
``eps`` means the same thing whatever normalization a recipe uses, and no adversarial image leaves
the set of images the pipeline can produce.

All functions are pure and jit-able; ``logits_fn(images) -> logits (N, K)`` is any closure over
the model, e.g. ``lambda x: model.apply(variables, x, train=False)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

__all__ = ["Normalization", "fgsm", "pgd", "attack"]

NORMS = ("linf", "l2")


@dataclasses.dataclass(frozen=True)
class Normalization:
    """How pixels become model inputs: ``x = (pixel - mean) / std``; pixels lie in ``pixel_range``.

    ``mean`` and ``std`` are scalars or per-channel sequences of length C.
    """

    mean: float | Sequence[float] = 0.0
    std: float | Sequence[float] = 1.0
    pixel_range: tuple[float, float] = (0.0, 1.0)

    def to_pixels(self, x: jax.Array) -> jax.Array:
        return x * jnp.asarray(self.std, x.dtype) + jnp.asarray(self.mean, x.dtype)

    def to_model(self, p: jax.Array) -> jax.Array:
        return (p - jnp.asarray(self.mean, p.dtype)) / jnp.asarray(self.std, p.dtype)

    def clip_pixels(self, p: jax.Array) -> jax.Array:
        return jnp.clip(p, *self.pixel_range)


def _check(norm: str, eps: float) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0 (a pixel-space budget such as 8/255), got {eps}")


def _loss_grad(logits_fn, norm_: Normalization, pixels, labels):
    """Gradient of the summed cross-entropy w.r.t. the pixels, (N, H, W, C)."""

    def loss(p):
        logits = logits_fn(norm_.to_model(p)).astype(jnp.float32)
        # Summed (not averaged) so each example's gradient is its own, whatever the batch size.
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).sum()

    return jax.grad(loss)(pixels)


def _l2(v):
    return jnp.sqrt(jnp.sum(jnp.square(v), axis=tuple(range(1, v.ndim)), keepdims=True))


def _ascent(grad, norm: str):
    """Steepest-ascent direction of unit norm (per example)."""
    if norm == "linf":
        return jnp.sign(grad)
    return grad / jnp.maximum(_l2(grad), 1e-12)


def _project(delta, eps: float, norm: str):
    """Project a perturbation onto the eps-ball of the norm (per example)."""
    if norm == "linf":
        return jnp.clip(delta, -eps, eps)
    return delta * jnp.minimum(1.0, eps / jnp.maximum(_l2(delta), 1e-12))


def fgsm(
    logits_fn: Callable[[jax.Array], jax.Array],
    images: jax.Array,
    labels: jax.Array,
    *,
    eps: float,
    norm: str = "linf",
    normalization: Normalization = Normalization(),
) -> jax.Array:
    """Fast gradient (sign) method (Goodfellow et al. 2015); L2 variant uses the normalized gradient.

    Args:
      images: float (N, H, W, C), normalized as the model expects.
      labels: int (N,) true classes (the attack increases their cross-entropy).
      eps: budget in pixel units.
    Returns:
      adversarial images, same shape/dtype as ``images``, normalized, within the valid pixel range.
    """
    _check(norm, eps)
    pixels = normalization.to_pixels(images)
    g = _loss_grad(logits_fn, normalization, pixels, labels)
    adv = normalization.clip_pixels(pixels + eps * _ascent(g, norm))
    return normalization.to_model(adv).astype(images.dtype)


def pgd(
    logits_fn: Callable[[jax.Array], jax.Array],
    images: jax.Array,
    labels: jax.Array,
    *,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    norm: str = "linf",
    random_start: bool = True,
    rng: jax.Array | None = None,
    normalization: Normalization = Normalization(),
) -> jax.Array:
    """Projected gradient descent attack (Madry et al. 2018).

    Args:
      images: float (N, H, W, C), normalized as the model expects.
      labels: int (N,).
      eps: budget in pixel units (radius of the L-inf or L2 ball around each image).
      steps: number of gradient steps.
      step_size: pixel units per step; default ``2.5 * eps / steps`` (Madry et al.).
      random_start: start from a uniform random point of the ball (needs ``rng``).
    Returns:
      adversarial images, same shape/dtype as ``images``.
    """
    _check(norm, eps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    alpha = 2.5 * eps / steps if step_size is None else step_size
    pixels = normalization.to_pixels(images).astype(jnp.float32)
    delta = jnp.zeros_like(pixels)
    if random_start:
        if rng is None:
            raise ValueError("pgd(random_start=True) needs rng=jax.random.key(...)")
        if norm == "linf":
            delta = jax.random.uniform(rng, pixels.shape, minval=-eps, maxval=eps)
        else:  # uniform in the L2 ball: random direction, radius eps * U^(1/d)
            k1, k2 = jax.random.split(rng)
            direction = jax.random.normal(k1, pixels.shape)
            direction = direction / jnp.maximum(_l2(direction), 1e-12)
            d = pixels[0].size
            radius = eps * jax.random.uniform(
                k2, (pixels.shape[0],) + (1,) * (pixels.ndim - 1)
            ) ** (1 / d)
            delta = direction * radius
    adv = normalization.clip_pixels(pixels + delta)

    def body(_, adv):
        g = _loss_grad(logits_fn, normalization, adv, labels)
        adv = adv + alpha * _ascent(g, norm)
        return normalization.clip_pixels(pixels + _project(adv - pixels, eps, norm))

    adv = jax.lax.fori_loop(0, steps, body, adv)
    return normalization.to_model(adv).astype(images.dtype)


def attack(
    name: str,
    logits_fn: Callable[[jax.Array], jax.Array],
    images: jax.Array,
    labels: jax.Array,
    *,
    eps: float,
    norm: str = "linf",
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    rng: jax.Array | None = None,
    normalization: Normalization = Normalization(),
) -> jax.Array:
    """Dispatch by name: ``'fgsm'`` or ``'pgd'``."""
    if name == "fgsm":
        return fgsm(logits_fn, images, labels, eps=eps, norm=norm, normalization=normalization)
    if name == "pgd":
        return pgd(
            logits_fn,
            images,
            labels,
            eps=eps,
            steps=steps,
            step_size=step_size,
            norm=norm,
            random_start=random_start,
            rng=rng,
            normalization=normalization,
        )
    raise ValueError(f"unknown attack {name!r}: use 'fgsm' or 'pgd'")
