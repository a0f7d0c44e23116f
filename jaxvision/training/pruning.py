"""Global magnitude pruning with the gradual polynomial schedule of Zhu & Gupta (2017).

``prune(inner_tx, schedule)`` wraps any optax optimizer: every ``update_every`` steps it recomputes
one global mask over all prunable weights (the smallest ``round(s_t * n)`` magnitudes are pruned,
exactly), and it turns the update of a pruned weight into ``-param`` so that the weight is exactly
zero after ``optax.apply_updates``. Magnitudes are taken of the already-masked weights, so a pruned
weight (magnitude 0) stays pruned as the sparsity grows.

Sparsity schedule (Zhu & Gupta eq. 1): ``s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (t_1 - t_0))^3``
for ``t_0 <= t <= t_1``; ``s_i`` before ``t_0`` and ``s_f`` after ``t_1``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

__all__ = [
    "PruneState",
    "apply_masks",
    "default_prunable",
    "global_magnitude_masks",
    "polynomial_sparsity",
    "prune",
    "sparsity_report",
]


def default_prunable(path: tuple[str, ...], leaf: jax.Array) -> bool:
    """Conv and dense kernels (``kernel`` leaves with ndim >= 2); biases, norms and embeddings are
    kept dense, as in Zhu & Gupta and the TF model-optimization toolkit."""
    return bool(path) and path[-1] == "kernel" and jnp.ndim(leaf) >= 2


def _paths(tree) -> list[tuple[str, ...]]:
    return [
        tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in p)
        for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]
    ]


def _prunable_flags(tree, prunable) -> list[bool]:
    return [prunable(p, leaf) for p, leaf in zip(_paths(tree), jax.tree.leaves(tree), strict=True)]


def polynomial_sparsity(
    target: float,
    *,
    begin_step: int = 0,
    end_step: int,
    initial: float = 0.0,
    power: float = 3.0,
) -> Callable[[jax.Array], jax.Array]:
    """Zhu & Gupta's schedule ``step -> sparsity`` (jit-able)."""
    if not 0.0 <= initial <= target < 1.0:
        raise ValueError(f"need 0 <= initial ({initial}) <= target ({target}) < 1")
    if end_step <= begin_step:
        raise ValueError(f"end_step ({end_step}) must be > begin_step ({begin_step})")

    def schedule(step):
        frac = jnp.clip(
            (jnp.asarray(step, jnp.float32) - begin_step) / (end_step - begin_step), 0.0, 1.0
        )
        return target + (initial - target) * (1.0 - frac) ** power

    return schedule


def global_magnitude_masks(params, sparsity, prunable: Callable = default_prunable):
    """Masks (True = keep) pruning exactly ``round(sparsity * n)`` of the ``n`` prunable weights,
    those of smallest magnitude over all layers together (ties broken by position). Non-prunable
    leaves get all-True masks. ``sparsity`` may be a traced scalar."""
    leaves, treedef = jax.tree.flatten(params)
    flags = _prunable_flags(params, prunable)
    chosen = [
        jnp.abs(leaf).ravel().astype(jnp.float32)
        for leaf, f in zip(leaves, flags, strict=True)
        if f
    ]
    if not chosen:
        raise ValueError("no prunable weights in params (default: 'kernel' leaves with ndim >= 2)")
    flat = jnp.concatenate(chosen)
    k = jnp.round(jnp.asarray(sparsity, jnp.float32) * flat.size).astype(jnp.int32)
    order = jnp.argsort(flat, stable=True)
    keep = jnp.ones(flat.size, bool).at[order].set(jnp.arange(flat.size) >= k)
    masks, offset = [], 0
    for leaf, f in zip(leaves, flags, strict=True):
        if f:
            masks.append(keep[offset : offset + leaf.size].reshape(leaf.shape))
            offset += leaf.size
        else:
            masks.append(jnp.ones(leaf.shape, bool))
    return jax.tree.unflatten(treedef, masks)


def apply_masks(params, masks):
    return jax.tree.map(lambda p, m: jnp.where(m, p, jnp.zeros_like(p)), params, masks)


class PruneState(NamedTuple):
    count: jax.Array  # int32 (): optimizer steps taken
    masks: Any  # bool tree like params (True = keep)
    inner: Any  # the wrapped optimizer's state


def prune(
    inner: optax.GradientTransformation,
    schedule: Callable[[jax.Array], jax.Array],
    *,
    update_every: int = 1,
    prunable: Callable = default_prunable,
) -> optax.GradientTransformation:
    """Wrap ``inner`` so that training prunes gradually to ``schedule(step)`` sparsity.

    The mask is recomputed at steps ``0, update_every, 2*update_every, ...`` from the weights after
    the step's update; pruned weights are set to exactly zero by the returned update. Use with
    ``optax.apply_updates`` as usual; ``update`` needs ``params``.
    """
    if update_every < 1:
        raise ValueError(f"update_every must be >= 1, got {update_every}")

    def init_fn(params):
        masks = jax.tree.map(lambda p: jnp.ones(p.shape, bool), params)
        return PruneState(jnp.zeros((), jnp.int32), masks, inner.init(params))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("prune(...).update needs params: call tx.update(grads, state, params)")
        updates, inner_state = inner.update(updates, state.inner, params)
        candidate = apply_masks(optax.apply_updates(params, updates), state.masks)
        masks = jax.lax.cond(
            state.count % update_every == 0,
            lambda: global_magnitude_masks(candidate, schedule(state.count), prunable),
            lambda: state.masks,
        )
        updates = jax.tree.map(lambda u, p, m: jnp.where(m, u, -p), updates, params, masks)
        return updates, PruneState(state.count + 1, masks, inner_state)

    return optax.GradientTransformation(init_fn, update_fn)


def sparsity_report(params, prunable: Callable = default_prunable) -> dict[str, Any]:
    """Fraction of exact zeros: global over the prunable weights, and per prunable leaf."""
    flat = traverse_util.flatten_dict(jax.tree.map(lambda x: x, _as_dict(params)), sep="/")
    per_layer, zeros, total = {}, 0, 0
    for name, leaf in flat.items():
        if prunable(tuple(name.split("/")), leaf):
            z = int(jnp.sum(leaf == 0))
            per_layer[name] = z / leaf.size
            zeros += z
            total += leaf.size
    return {
        "sparsity": zeros / max(total, 1),
        "zeros": zeros,
        "prunable": total,
        "per_layer": per_layer,
    }


def _as_dict(tree):
    from flax.core import unfreeze

    return unfreeze(tree)
