"""Normalization layers with one calling convention, ``norm(x, train=False)``, so that blocks can
take any of them as a factory (``functools.partial(BatchNorm, momentum=0.99)``, ``GroupNorm``...).

Statistics are reduced in float32 whatever the compute dtype; outputs are in ``dtype``; the
``scale`` and ``bias`` parameters are in ``param_dtype``.
"""

from __future__ import annotations

import functools

import flax.linen as nn

__all__ = ["BatchNorm", "GroupNorm", "LayerNorm", "batch_norm_of"]


class BatchNorm(nn.BatchNorm):
    """Batch normalization over N, H, W of NHWC inputs (any rank: all axes but the last).

    ``train=True`` normalizes with the statistics of the current batch and updates the running
    statistics in the ``batch_stats`` collection (``ra = momentum * ra + (1 - momentum) * batch``;
    the variance is the biased batch variance, as Flax/TF; apply with ``mutable=['batch_stats']``).
    ``train=False`` normalizes with the running statistics.

    Attributes (from ``flax.linen.BatchNorm``): ``momentum`` (0.9 = PyTorch's momentum 0.1;
    EfficientNet uses 0.99), ``epsilon`` (PyTorch 1e-5; TF/EfficientNet 1e-3), ``axis_name``
    (a pmap/shard_map axis name such as 'batch': batch statistics are averaged over it, i.e.
    synchronized BatchNorm; None keeps them per device), ``scale_init`` (zeros for a
    zero-initialized residual branch), ``dtype``, ``param_dtype``.
    Shapes: x (..., C) -> (..., C); params ``scale``, ``bias`` (C,); batch_stats ``mean``, ``var`` (C,).
    """

    momentum: float = 0.9
    epsilon: float = 1e-5

    def __call__(self, x, train: bool = False):  # type: ignore[override]
        return super().__call__(x, use_running_average=not train)


class GroupNorm(nn.GroupNorm):
    """Group normalization (Wu & He 2018) over (H, W, C / groups) per example. ``train`` is
    accepted and ignored (no batch statistics). Defaults: 32 groups, epsilon 1e-5 (PyTorch);
    google-research/vision_transformer's ResNet hybrids use Flax's 1e-6 (pass ``epsilon=1e-6``).
    Params ``scale``, ``bias`` (C,)."""

    num_groups: int | None = 32
    epsilon: float = 1e-5

    def __call__(self, x, train: bool = False):  # type: ignore[override]
        del train
        return super().__call__(x)


class LayerNorm(nn.LayerNorm):
    """Layer normalization over the last axis. ``train`` is accepted and ignored.
    Default epsilon 1e-6 (ViT / big_vision). Params ``scale``, ``bias`` (C,)."""

    epsilon: float = 1e-6

    def __call__(self, x, train: bool = False):  # type: ignore[override]
        del train
        return super().__call__(x)


def batch_norm_of(model) -> functools.partial:
    """The ``BatchNorm`` a model's layers share: its ``bn_momentum``, ``bn_epsilon`` and
    ``bn_axis_name`` fields (the last averages statistics across devices under pmap)."""
    return functools.partial(BatchNorm, momentum=model.bn_momentum, epsilon=model.bn_epsilon,
                             axis_name=model.bn_axis_name)
