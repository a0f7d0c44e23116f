"""ResNet v1.5 (He et al. 2016; stride on the 3x3 conv, as torchvision and the Flax ImageNet
example) and ``ResNetStages``, the reusable stem + residual stages backbone (also used with
weight-standardized convs and GroupNorm by the ViT paper's hybrids)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.layers import (
    BasicBlock,
    BatchNorm,
    Bottleneck,
    Conv,
    Dropout,
    batch_norm_of,
    global_avg_pool,
    max_pool,
    remat_block,
)
from jaxvision.layers.conv import Padding
from jaxvision.models.features import sow_level
from jaxvision.models.registry import register

__all__ = ["RESNET_CONFIGS", "ResNet", "ResNetStages"]

# depth -> (block, blocks per stage)
RESNET_CONFIGS: dict[int, tuple[type[BasicBlock], tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


class ResNetStages(nn.Module):
    """ResNet backbone: stem + residual stages, returning the last feature map (no pooling, no head).

    Layout: stem conv ``stem_kernel`` x ``stem_kernel`` / 2 (``width`` channels, no bias) -> norm
    -> act -> [3x3 / 2 max pool if ``stem_pool``] -> for stage i (0-based) with
    ``stage_sizes[i]`` blocks of ``block(width * 2**i)``: the first block of every stage but the
    first has stride 2 (v1.5: on the 3x3 conv of a bottleneck). Each stage therefore halves the
    resolution except the first, and the output stride is ``2 ** (1 + stem_pool + len(stage_sizes) - 1)``.

    Attributes:
      stage_sizes: blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50; (3, 4, 9) for the ViT
        paper's R50+ViT-B/16 hybrid (output stride 16: 14x14 at 224); (2, 2, 2, 2) for R26.
      block: ``BasicBlock`` or ``Bottleneck`` (output channels ``width * 2**i * block.expansion``).
      width: stem and first-stage width (64; the hybrids scale it with their width factor).
      conv: conv factory (``Conv``; ``StdConv`` for weight standardization).
      norm: norm factory called as ``norm(dtype=, param_dtype=, name=, [scale_init=])`` then
        ``(x, train)``: ``functools.partial(BatchNorm, momentum=, epsilon=, axis_name=)`` or
        ``functools.partial(GroupNorm, num_groups=32, epsilon=1e-6)``.
      act: activation (ReLU).
      padding: "SYMMETRIC" = PyTorch (stem conv pad 3, max pool pad 1, 3x3 pad 1), "SAME" = TF/Flax
        (what google-research/vision_transformer uses for its hybrids' stem, pool and blocks).
      stem_kernel, stem_pool: the 7x7 stem and its max pool (both present in torchvision and in
        vision_transformer's hybrids).
      zero_init_last: zero-init the last norm's scale of every block (residual branches start at 0;
        vision_transformer's ResidualUnit does this).
      drop_path_rate: stochastic depth, growing linearly from 0 at the first block to this value
        at the last (as timm).
      remat: rematerialization policy of every block, 'none' | 'full' | 'dots_saveable'
        (``layers.remat``); the parameter tree does not change.

    Feature levels (``models.features``): the stem's activation, then every stage's output.

    Submodule names: ``stem_conv``, ``stem_norm``, ``stage{i}_block{j}`` (1-based), each block with
    ``conv1..3``/``norm1..3`` and, where the shape changes, ``downsample_conv``/``downsample_norm``.

    Example (R50+ViT-B/16 backbone)::

        ResNetStages((3, 4, 9), block=Bottleneck, conv=StdConv,
                     norm=functools.partial(GroupNorm, epsilon=1e-6), padding="SAME",
                     zero_init_last=True)

    Input (N, H, W, C) -> (N, H / stride, W / stride, width * 2**(len(stage_sizes) - 1) * expansion)
    in ``dtype``.
    """

    stage_sizes: Sequence[int]
    block: type[BasicBlock] = Bottleneck
    width: int = 64
    conv: Callable[..., nn.Module] = Conv
    norm: Callable[..., nn.Module] = BatchNorm
    act: Callable[[jnp.ndarray], jnp.ndarray] = nn.relu
    padding: Padding = "SYMMETRIC"
    stem_kernel: int = 7
    stem_strides: int = 2
    stem_pool: bool = True
    stride_in_1x1: bool = False
    zero_init_last: bool = False
    drop_path_rate: float = 0.0
    remat: str = "none"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        block = remat_block(self.block, self.remat, static_argnums=(2,))  # train stays static
        x = self.conv(self.width, self.stem_kernel, strides=self.stem_strides, padding=self.padding,
                      use_bias=False,
                      name="stem_conv", **kw)(x)
        x = self.act(self.norm(name="stem_norm", **kw)(x, train))
        sow_level(x)  # level 0: the stem (stride 2 with the ImageNet stem), as timm's 'act1'
        if self.stem_pool:
            x = max_pool(x, 3, 2, padding=self.padding)
        total = sum(self.stage_sizes)
        k = 0
        for i, n in enumerate(self.stage_sizes):
            for j in range(n):
                rate = self.drop_path_rate * k / max(total - 1, 1)
                x = block(
                    self.width * 2**i,
                    strides=2 if (i > 0 and j == 0) else 1,
                    conv=self.conv,
                    norm=self.norm,
                    act=self.act,
                    padding=self.padding,
                    zero_init_last=self.zero_init_last,
                    drop_path_rate=rate,
                    **({"stride_in_1x1": True} if self.stride_in_1x1 else {}),
                    name=f"stage{i + 1}_block{j + 1}",
                    **kw,
                )(x, train)
                k += 1
            sow_level(x)  # level i + 1: stage i's output
        return x


# 'imagenet': 7x7/2 conv + 3x3/2 max pool (torchvision). 'cifar': 3x3/1 conv, no pool, for 32 px
# inputs (He et al. 2016, sec. 4.2; the usual CIFAR ResNet-18), keeping the 32x32 resolution.
STEMS = {
    "imagenet": {"stem_kernel": 7, "stem_strides": 2, "stem_pool": True},
    "cifar": {"stem_kernel": 3, "stem_strides": 1, "stem_pool": False},
}


class ResNet(nn.Module):
    """ResNet v1.5 classifier: ``ResNetStages`` (submodule ``backbone``) -> global average pool
    -> dropout -> head. ``stem='cifar'`` swaps the ImageNet stem for a 3x3/1 conv without pool. Input (N, H, W, 3) (224 by default). Output (N, num_classes) logits, or
    the pooled features (512 * expansion) when ``num_classes == 0``."""

    stage_sizes: Sequence[int]
    block: type[BasicBlock] = Bottleneck
    width: int = 64
    num_classes: int = 1000
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_axis_name: str | None = None
    zero_init_residual: bool = False
    stem: str = "imagenet"
    stride_in_1x1: bool = False
    remat: str = "none"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.stride_in_1x1 and self.block is not Bottleneck:
            raise ValueError("stride_in_1x1 applies to bottleneck ResNets (50/101/152) only")
        if self.stem not in STEMS:
            raise ValueError(f"unknown ResNet stem {self.stem!r}; choose one of {sorted(STEMS)}")
        norm = batch_norm_of(self)
        x = ResNetStages(
            self.stage_sizes,
            block=self.block,
            width=self.width,
            norm=norm,
            zero_init_last=self.zero_init_residual,
            drop_path_rate=self.drop_path_rate,
            **STEMS[self.stem],
            stride_in_1x1=self.stride_in_1x1,
            remat=self.remat,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="backbone",
        )(x, train)
        x = global_avg_pool(x)
        x = Dropout(self.drop_rate)(x, train)
        if self.num_classes:
            x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype, name="head")(x)
        return x


def _register(depth: int):
    block, stages = RESNET_CONFIGS[depth]

    def builder(num_classes, dtype, param_dtype, *, drop_rate=0.0, drop_path_rate=0.0,
                bn_momentum=0.9, bn_epsilon=1e-5, bn_axis_name=None, zero_init_residual=False,
                stem="imagenet", stride_in_1x1=False, stage_sizes=None, width=64, remat="none"):
        """``stage_sizes``/``width`` (stem and first-stage width) change the architecture, e.g.
        for tiny test instances; ``remat``: the blocks' rematerialization policy."""
        return ResNet(tuple(stage_sizes or stages), block=block, width=width,
                      num_classes=num_classes, drop_rate=drop_rate,
                      drop_path_rate=drop_path_rate, bn_momentum=bn_momentum,
                      bn_epsilon=bn_epsilon, bn_axis_name=bn_axis_name,
                      zero_init_residual=zero_init_residual, stem=stem,
                      stride_in_1x1=stride_in_1x1, remat=remat, dtype=dtype,
                      param_dtype=param_dtype)

    builder.__name__ = builder.__qualname__ = f"resnet{depth}"
    return register(f"resnet{depth}", family="resnet", default_resolution=224,
                    description=f"ResNet-{depth} v1.5 (torchvision).")(builder)


for _depth in RESNET_CONFIGS:
    _register(_depth)
