"""Mixed precision: compute dtype from the config, float16 dynamic loss scaling.

Parameters, the loss and the softmax stay float32 in every mode; only the model's activations
(its ``dtype``) change. float16 needs loss scaling because small gradients underflow: the loss is
multiplied by ``scale`` before differentiation, gradients are divided by it, and a step whose
gradients are not finite is skipped and halves the scale; ``growth_interval`` finite steps in a row
double it (the dynamic scheme of Micikevicius et al. 2018, as in jmp / torch.cuda.amp).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
GROWTH_INTERVAL = 2000
MIN_SCALE = 1.0


def compute_dtype(name: str):
    """jnp dtype for ``config.dtype`` ('float32' | 'bfloat16' | 'float16')."""
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"dtype {name!r} is not supported; use one of {', '.join(_DTYPES)}.") from None


def needs_loss_scaling(name: str) -> bool:
    return name == "float16"


def all_finite(tree) -> jax.Array:
    """bool () - every element of every leaf is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def update_loss_scale(loss_scale: dict, finite: jax.Array) -> dict:
    """Next {'scale', 'good_steps'} after a step whose gradients were ``finite``."""
    scale, good = loss_scale["scale"], loss_scale["good_steps"]
    grow = finite & (good + 1 >= GROWTH_INTERVAL)
    new_scale = jnp.where(finite, jnp.where(grow, scale * 2.0, scale), jnp.maximum(scale / 2, MIN_SCALE))
    new_good = jnp.where(finite & ~grow, good + 1, 0).astype(jnp.int32)
    return {"scale": new_scale.astype(jnp.float32), "good_steps": new_good}


def select_tree(pred: jax.Array, on_true, on_false):
    """Leafwise ``where(pred, a, b)`` (used to skip non-finite steps)."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)
