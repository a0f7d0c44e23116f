"""Dropout and DropPath (stochastic depth), both ``layer(x, train=False)``: identity in evaluation,
inverted scaling (kept values / keep_prob) in training so that the expectation is unchanged."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["DropPath", "Dropout", "drop_path"]


class Dropout(nn.Dropout):
    """Element-wise dropout with ``rate`` from the 'dropout' rng stream. x (...) -> (...)."""

    def __call__(self, x, train: bool = False):  # type: ignore[override]
        return super().__call__(x, deterministic=not train)


def drop_path(x: jnp.ndarray, rate: float, rng: jax.Array) -> jnp.ndarray:
    """Zero whole examples of ``x`` (N, ...) with probability ``rate``; scale the kept ones by
    1 / (1 - rate). Pure function (rate is a Python float)."""
    if rate <= 0.0:
        return x
    if rate >= 1.0:
        return jnp.zeros_like(x)
    keep = 1.0 - rate
    mask = jax.random.bernoulli(rng, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros((), x.dtype))


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): drops a residual branch per example.

    Apply to the branch before the residual addition: ``x + DropPath(rate)(branch, train)``.
    Training draws from the 'drop_path' rng stream; evaluation (``train=False``) or ``rate == 0``
    is the identity. x (N, ...) -> (N, ...), same dtype.
    """

    rate: float = 0.0
    rng_collection: str = "drop_path"

    @nn.compact
    def __call__(self, x, train: bool = False):
        if not train or self.rate <= 0.0:
            return x
        return drop_path(x, self.rate, self.make_rng(self.rng_collection))
