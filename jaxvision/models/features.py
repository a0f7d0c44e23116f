"""Multi-scale feature maps of any registered model (timm's ``features_only`` convention).

A family marks the end of each of its *levels* (a stage, a resolution, or a transformer block)
with ``sow_level(x)``; levels are numbered 0, 1, ... in the order the model reaches them.
``FeatureExtractor`` runs a model built without its classifier and returns the NHWC maps of the
requested levels. ``feature_info`` derives each level's channels and stride (reduction) from
the model itself (``jax.eval_shape`` at the default resolution), so no per-family table can
disagree with the code.

    model = models.create("resnet50", features_only=True, out_indices=(1, 2, 3, 4))
    variables = model.init(rng, x)                  # the classifier's variables minus its head
    maps = model.apply(variables, x)                # list of (N, H/s, W/s, C) arrays

The collecting mechanism (``sow_level``, ``collect_levels``) lives in
``jaxvision.layers.feature_levels`` so that layers (the transformer encoder) can mark levels too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.layers.feature_levels import (
    collect_levels,
    collecting,
    level_ends,
    sow_level,
    tokens_to_map,
)

__all__ = [
    "FeatureExtractor",
    "collect_levels",
    "collecting",
    "level_ends",
    "level_info",
    "sow_level",
    "tokens_to_map",
]


class FeatureExtractor(nn.Module):
    """The feature maps of ``model`` (built with ``num_classes=0``): (N, H, W, C) -> list of
    (N, H_i, W_i, C_i) in the model's dtype, one per index of ``out_indices`` (``None``: every
    level; negative indices count from the last level).

    The variables are exactly the wrapped model's (the scope is shared), so a classifier's
    checkpoint without its ``head`` loads as is; parameters after the last requested level are
    kept but unused (their computation is removed by XLA under ``jit``). ``train=True`` takes
    the model's usual ``rngs`` (``dropout``, ``drop_path``) and ``mutable=['batch_stats']``.

    Raises:
      ValueError: at trace time, when an index is out of range for the model's levels.
    """

    model: nn.Module
    out_indices: Sequence[int] | None = None

    def setup(self):
        nn.share_scope(self, self.model)

    def __call__(self, x, train: bool = False):
        with collect_levels() as levels:
            self.model(x, train=train)
        if self.out_indices is None:
            return list(levels)
        n = len(levels)
        bad = [i for i in self.out_indices if not -n <= i < n]
        if bad:
            raise ValueError(
                f"out_indices {tuple(self.out_indices)}: {bad} out of range; "
                f"{type(self.model).__name__} has {n} feature levels (0..{n - 1})"
            )
        return [levels[i] for i in self.out_indices]


def level_info(model: nn.Module, shape: Sequence[int]) -> list[dict[str, Any]]:
    """Channels and stride of every level of ``model`` (built with ``num_classes=0``) for an
    input of ``shape`` (N, H, W, C), computed with ``jax.eval_shape`` (nothing is run).

    Each entry: ``index``, ``channels`` (alias ``num_chs``), ``stride`` (alias ``reduction``:
    input height over map height, rounded to a power of two as every level of the zoo is
    strided by powers of two; unpadded convolutions such as LeNet's shrink maps a little more).
    """
    extractor = FeatureExtractor(model)
    x = jax.ShapeDtypeStruct(tuple(shape), jnp.float32)

    def run(rng, x):
        return extractor.init_with_output(rng, x, train=False)[0]

    maps = jax.eval_shape(run, jax.random.key(0), x)
    info = []
    for i, m in enumerate(maps):
        stride = 2 ** round(math.log2(shape[1] / m.shape[1]))
        info.append({"index": i, "stride": stride, "reduction": stride,
                     "channels": int(m.shape[-1]), "num_chs": int(m.shape[-1])})
    return info
