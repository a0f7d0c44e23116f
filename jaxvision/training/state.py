"""The train state: one flax struct (a pytree), so jit, pmap, Orbax and ``jax.tree`` treat it alike."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct


@struct.dataclass
class TrainState:
    """Everything that changes during training.

    Fields (shapes are per replica; the pmap path stacks a leading device axis on every leaf):
      step: int32 () - number of train steps taken (= data batches consumed).
      params: pytree of float32 - the model's ``params`` collection.
      batch_stats: pytree of float32 - BatchNorm running statistics ({} when the model has none).
      opt_state: optax state of ``tx``.
      ema_params: pytree like ``params`` or None - exponential moving average of ``params``.
      rng: uint32 (2,) - base key; each step folds in ``step`` (so resuming reuses the same keys).
      loss_scale: dict(scale=float32 (), good_steps=int32 ()) for float16 dynamic loss scaling,
        else None.
      tx: the optax transformation (static: not a leaf, not checkpointed).
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    ema_params: Any
    rng: jax.Array
    loss_scale: Any = None
    tx: optax.GradientTransformation = struct.field(pytree_node=False, default=None)

    @classmethod
    def create(cls, *, params, batch_stats, tx, rng, ema: bool = False, loss_scale: bool = False):
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            batch_stats=batch_stats,
            opt_state=tx.init(params),
            ema_params=jax.tree.map(jnp.copy, params) if ema else None,
            rng=rng,
            loss_scale=(
                {"scale": jnp.asarray(2.0**15, jnp.float32), "good_steps": jnp.zeros((), jnp.int32)}
                if loss_scale
                else None
            ),
            tx=tx,
        )

    def variables(self, use_ema: bool = False) -> dict:
        """Model variables for ``model.apply``: {'params', 'batch_stats'} (EMA params if asked)."""
        params = self.ema_params if (use_ema and self.ema_params is not None) else self.params
        return {"params": params, "batch_stats": self.batch_stats}
