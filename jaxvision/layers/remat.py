"""Rematerialization (activation checkpointing) of repeated blocks, by named policy.

Training keeps every block's activations for the backward pass; rematerializing a block keeps only
its input and recomputes the inside during the backward pass (Chen et al. 2016, "Training deep
nets with sublinear memory cost"): less activation memory for about one more forward pass.

Policies (``jax.checkpoint_policies``, as big_vision and MaxText name them):

* ``'none'``: no rematerialization (everything saved).
* ``'full'``: ``nothing_saveable``; only the block's input is kept, everything else recomputed.
* ``'dots_saveable'``: ``dots_with_no_batch_dims_saveable``; the outputs of matmuls and
  convolutions without batch dimensions are kept (the costly ops are not redone), the cheap
  element-wise ones (norms, activations, residual sums) are recomputed. The Dense products that
  run as oneDNN custom calls on the CPU (``onednn_matmul``), which this JAX policy cannot see as
  dots, are kept too: their outputs carry the checkpoint name ``DENSE_PRODUCT``.

``remat_block`` wraps a Linen module class with ``flax.linen.remat``; the wrapped class creates the
same submodules under the same names, so parameter trees (and checkpoints, converters) do not
change with the policy.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from jaxvision.layers.onednn_matmul import DENSE_PRODUCT

__all__ = ["REMAT_POLICIES", "remat_block", "remat_policy_name"]

REMAT_POLICIES = ("none", "full", "dots_saveable")

_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.save_from_both_policies(
        jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
        jax.checkpoint_policies.save_only_these_names(DENSE_PRODUCT)),
}


def remat_policy_name(remat: bool | str) -> str:
    """The policy name of ``remat``: one of ``REMAT_POLICIES``, or a bool (True = 'full', the
    meaning of the older boolean option; False = 'none'). Raises ValueError otherwise."""
    if isinstance(remat, bool):
        return "full" if remat else "none"
    if remat not in REMAT_POLICIES:
        raise ValueError(f"remat={remat!r} is not a rematerialization policy; use one of "
                         f"{', '.join(map(repr, REMAT_POLICIES))}.")
    return remat


def remat_block(block_cls: type[nn.Module], remat: bool | str, *, static_argnums=(),
                prevent_cse: bool = True) -> type[nn.Module]:
    """``block_cls`` rematerialized under policy ``remat`` (``block_cls`` itself for 'none').

    static_argnums: positions of the call's Python arguments (bools such as ``train``), counting
      the module as 0, as ``flax.linen.remat`` does.
    prevent_cse: False inside ``nn.scan`` (scan already keeps XLA from merging the recomputation
      with the forward pass; see ``jax.checkpoint``).
    """
    name = remat_policy_name(remat)
    if name == "none":
        return block_cls
    return nn.remat(block_cls, policy=_POLICIES[name], static_argnums=static_argnums,
                    prevent_cse=prevent_cse)
