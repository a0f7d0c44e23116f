"""Feature levels: the maps a model marks with ``sow_level`` while a feature extractor
(``jaxvision.models.features.FeatureExtractor``) collects them, in call order.

A context variable holds the active collectors; outside of one, ``sow_level`` does nothing. Not
``Module.sow``: ``init`` makes every collection mutable, so sown maps would land in every model's
variables. Call ``sow_level`` outside lifted transforms (``nn.scan``/``nn.remat`` bodies), whose
tracers must not escape them.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Sequence

import jax.numpy as jnp

__all__ = ["collect_levels", "collecting", "level_ends", "sow_level", "tokens_to_map"]

_COLLECTORS: contextvars.ContextVar[tuple[list, ...]] = contextvars.ContextVar(
    "jaxvision_feature_collectors", default=()
)


@contextlib.contextmanager
def collect_levels():
    """Collect the maps passed to ``sow_level`` while the block runs, in call order."""
    levels: list = []
    token = _COLLECTORS.set(_COLLECTORS.get() + (levels,))
    try:
        yield levels
    finally:
        _COLLECTORS.reset(token)


def collecting() -> bool:
    """Whether a ``FeatureExtractor`` is collecting levels now (models may then keep values they
    would otherwise not materialize, e.g. every layer's output of a scanned encoder)."""
    return bool(_COLLECTORS.get())


def sow_level(x: jnp.ndarray) -> None:
    """Mark ``x`` (N, H, W, C) as the model's next level (a no-op unless a ``FeatureExtractor``
    is tracing the model)."""
    if x.ndim != 4:
        raise ValueError(f"a feature level must be an NHWC map, got shape {x.shape}")
    collectors = _COLLECTORS.get()
    if collectors:
        collectors[-1].append(x)


def level_ends(strides: Sequence[int]) -> frozenset[int]:
    """Indices of the blocks that end a resolution (the next block is strided, or none follows):
    the levels of a mobile network (timm's 'bottleneck' feature location)."""
    n = len(strides)
    return frozenset(k for k in range(n) if k == n - 1 or strides[k + 1] > 1)


def tokens_to_map(tokens: jnp.ndarray, grid: tuple[int, int], num_prefix_tokens: int = 0):
    """Transformer tokens (N, prefix + gh * gw, D) -> patch-token map (N, gh, gw, D)."""
    n, _, d = tokens.shape
    return tokens[:, num_prefix_tokens:].reshape(n, grid[0], grid[1], d)
