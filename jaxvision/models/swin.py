"""Swin Transformer v1 (Liu et al. 2021) in torchvision's layout (``torchvision.models.swin_t``,
``swin_s``, ``swin_b``): patchify conv 4x4/4 + LayerNorm, four stages of (shifted) window
attention blocks with relative position bias, patch merging between stages, final LayerNorm,
global average pool, linear head.

Follows ``torchvision/models/swin_transformer.py`` exactly (so converted weights give its logits):
windows of 7x7, shift of half a window on every second block, the shifted-window attention mask
of -100 on the logits of token pairs from different regions, zero padding of the feature map to
a multiple of the window (padded tokens take part in attention, as there), no shift along an axis
the window already covers, LayerNorm epsilon 1e-5, exact GELU, stochastic depth growing linearly
from 0 to ``drop_path_rate`` over all blocks, torch trunc_normal_(std=0.02) = N(0, 0.02) linear layers with zero
biases. Sizes (torchvision): T = (96, depths 2-2-6-2, heads 3-6-12-24, drop path 0.2),
S = (96, 2-2-18-2, 3-6-12-24, 0.3), B = (128, 2-2-18-2, 4-8-16-32, 0.5).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxvision.layers import (
    Conv,
    Dropout,
    DropPath,
    MlpBlock,
    RelativePositionSelfAttention,
    f32_accumulating_dot_general,
    gelu_exact,
    remat_block,
    window_merge,
    window_partition,
)
from jaxvision.layers.norm import LayerNorm
from jaxvision.layers.relative_attention import std02_init
from jaxvision.models.features import sow_level
from jaxvision.models.registry import register

__all__ = ["SWIN_SIZES", "SwinConfig", "SwinTransformer", "shifted_window_mask"]

# PyTorch's default Conv2d init (kaiming_uniform with a=sqrt(5)): torchvision's Swin leaves the
# patch-embedding conv at it.
torch_default_conv_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
# torchvision: LayerNorm(eps=1e-5); the shifted-window mask value on the logits.
LAYER_NORM_EPS = 1e-5
MASK_VALUE = -100.0


@dataclasses.dataclass(frozen=True)
class SwinConfig:
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    drop_path_rate: float


SWIN_SIZES = {
    "swin_t": SwinConfig(96, (2, 2, 6, 2), (3, 6, 12, 24), 0.2),
    "swin_s": SwinConfig(96, (2, 2, 18, 2), (3, 6, 12, 24), 0.3),
    "swin_b": SwinConfig(128, (2, 2, 18, 2), (4, 8, 16, 32), 0.5),
}


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def shifted_window_mask(height: int, width: int, window: tuple[int, int],
                        shift: tuple[int, int]) -> np.ndarray:
    """Additive logits mask (num_windows, 1, N, N) for a (height, width) map (already padded to
    a multiple of ``window``) rolled by ``-shift``: 0 between tokens of the same region, -100
    between tokens whose regions differ (torchvision ``shifted_window_attention``)."""
    wh, ww = window
    regions = np.zeros((height, width), np.float32)
    count = 0
    for hs in (slice(0, -wh), slice(-wh, -shift[0] or None), slice(-shift[0] or None, None)):
        for ws in (slice(0, -ww), slice(-ww, -shift[1] or None), slice(-shift[1] or None, None)):
            regions[hs, ws] = count
            count += 1
    regions = regions.reshape(height // wh, wh, width // ww, ww).transpose(0, 2, 1, 3)
    regions = regions.reshape(-1, wh * ww)
    diff = regions[:, None, :] - regions[:, :, None]
    return np.where(diff != 0, MASK_VALUE, 0.0).astype(np.float32)[:, None]


class ShiftedWindowAttention(nn.Module):
    """(Shifted) window attention on a feature map: x (B, H, W, C) -> (B, H, W, C).

    Pads H, W up to multiples of the window with zeros, rolls by ``-shift`` (zeroed along an axis
    whose padded size the window covers), attends inside each window with relative position
    bias (and the region mask when shifted), then undoes roll, windows and padding."""

    num_heads: int
    window_size: tuple[int, int]
    shift_size: tuple[int, int]
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        _, h, w, _ = x.shape
        wh, ww = self.window_size
        x = jnp.pad(x, ((0, 0), (0, -h % wh), (0, -w % ww), (0, 0)))
        ph, pw = x.shape[1:3]
        shift = (0 if wh >= ph else self.shift_size[0], 0 if ww >= pw else self.shift_size[1])
        mask = None
        if sum(shift) > 0:
            x = jnp.roll(x, (-shift[0], -shift[1]), axis=(1, 2))
            mask = jnp.asarray(shifted_window_mask(ph, pw, self.window_size, shift))
        y = RelativePositionSelfAttention(self.num_heads, self.window_size, dtype=self.dtype,
                                          param_dtype=self.param_dtype, name="attn")(
            window_partition(x, self.window_size), mask)
        y = window_merge(y, self.window_size, ph, pw)
        if sum(shift) > 0:
            y = jnp.roll(y, shift, axis=(1, 2))
        return y[:, :h, :w]


class SwinBlock(nn.Module):
    """x + DropPath(W-MSA(LN(x))), then x + DropPath(MLP(LN(x))); x (B, H, W, C)."""

    num_heads: int
    window_size: tuple[int, int]
    shift_size: tuple[int, int]
    mlp_ratio: float = 4.0
    dropout_rate: float = 0.0
    drop_path_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        c = x.shape[-1]
        y = LayerNorm(LAYER_NORM_EPS, name="norm1", **kw)(x)
        y = ShiftedWindowAttention(self.num_heads, self.window_size, self.shift_size,
                                   name="attn", **kw)(y)
        y = Dropout(self.dropout_rate)(y, train)
        x = x + DropPath(self.drop_path_rate)(y, train)
        y = LayerNorm(LAYER_NORM_EPS, name="norm2", **kw)(x)
        y = MlpBlock(int(c * self.mlp_ratio), dropout_rate=self.dropout_rate, act=gelu_exact,
                     kernel_init=std02_init, bias_init=nn.initializers.zeros, name="mlp",
                     **kw)(y, deterministic=not train)
        return x + DropPath(self.drop_path_rate)(y, train)


class PatchMerging(nn.Module):
    """Swin v1 patch merging: (B, H, W, C) -> pad to even -> concat of the 2x2 neighbours
    (x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]) -> LayerNorm(4C) -> Linear to
    2C without bias; -> (B, ceil(H/2), ceil(W/2), 2C)."""

    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        h, w, c = x.shape[1:]
        x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
        x = jnp.concatenate(
            [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], axis=-1)
        x = LayerNorm(LAYER_NORM_EPS, dtype=self.dtype, param_dtype=self.param_dtype,
                         name="norm")(x)
        return nn.Dense(2 * c, use_bias=False, kernel_init=std02_init, dtype=self.dtype,
                        param_dtype=self.param_dtype, dot_general=f32_accumulating_dot_general,
                        name="reduction")(x)


class SwinTransformer(nn.Module):
    """Swin Transformer v1. Input (N, H, W, 3) (224 by default; any size works: maps are padded
    to the window). Output (N, num_classes) logits, or the pooled (N, embed_dim * 2^(S-1))
    features when ``num_classes == 0``. Feature levels (``models.features.sow_level``): the
    output of stage i, (N, H / (4 * 2^i), W / (4 * 2^i), embed_dim * 2^i), before the final
    norm (timm's convention).

    Attributes:
      embed_dim, depths, num_heads: the size (``SWIN_SIZES``).
      patch_size, window_size: 4 and 7 in every published size.
      drop_rate: dropout after attention, in the MLP (torchvision's ``dropout``); 0 by default.
      drop_path_rate: stochastic depth of the last block (linear from 0 over the blocks).
      remat: the blocks' rematerialization policy ('none' | 'full' | 'dots_saveable').
    """

    embed_dim: int = 96
    depths: Sequence[int] = (2, 2, 6, 2)
    num_heads: Sequence[int] = (3, 6, 12, 24)
    patch_size: int = 4
    window_size: int | Sequence[int] = 7
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    drop_rate: float = 0.0
    drop_path_rate: float = 0.2
    remat: str = "none"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        if len(self.depths) != len(self.num_heads):
            raise ValueError(f"depths {self.depths} and num_heads {self.num_heads} differ in length")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        window = _pair(self.window_size)
        x = Conv(self.embed_dim, self.patch_size, self.patch_size, padding="VALID",
                 kernel_init=torch_default_conv_init, name="patch_embed", **kw)(x)
        x = LayerNorm(LAYER_NORM_EPS, name="patch_norm", **kw)(x)
        total, k = sum(self.depths), 0
        block = remat_block(SwinBlock, self.remat, static_argnums=(2,))  # train stays static
        for i, (depth, heads) in enumerate(zip(self.depths, self.num_heads, strict=True)):
            if i > 0:
                x = PatchMerging(name=f"merge{i}", **kw)(x)
            for j in range(depth):
                shift = (0, 0) if j % 2 == 0 else (window[0] // 2, window[1] // 2)
                x = block(heads, window, shift, self.mlp_ratio, self.drop_rate,
                              self.drop_path_rate * k / max(total - 1, 1),
                              name=f"stage{i + 1}_block{j + 1}", **kw)(x, train)
                k += 1
            sow_level(x)
        x = LayerNorm(LAYER_NORM_EPS, name="norm", **kw)(x)
        x = jnp.mean(x, axis=(1, 2), dtype=jnp.float32).astype(x.dtype)
        if self.num_classes:
            x = nn.Dense(self.num_classes, kernel_init=std02_init,
                         dot_general=f32_accumulating_dot_general, name="head", **kw)(x)
        return x


def _register(name: str, size: SwinConfig):
    def builder(num_classes, dtype, param_dtype, *, embed_dim=size.embed_dim, depths=size.depths,
                num_heads=size.num_heads, patch_size=4, window_size=7, mlp_ratio=4.0,
                drop_rate=0.0, drop_path_rate=size.drop_path_rate, bn_axis_name=None,
                remat="none"):
        del bn_axis_name  # no BatchNorm: accepted so that generic configs can pass it
        return SwinTransformer(embed_dim=embed_dim, depths=tuple(depths), num_heads=tuple(num_heads),
                               patch_size=patch_size, window_size=window_size, mlp_ratio=mlp_ratio,
                               num_classes=num_classes, drop_rate=drop_rate,
                               drop_path_rate=drop_path_rate, remat=remat, dtype=dtype,
                               param_dtype=param_dtype)

    builder.__name__ = builder.__qualname__ = name
    label = {"swin_t": "Swin-T", "swin_s": "Swin-S", "swin_b": "Swin-B"}[name]
    register(name, family="swin", default_resolution=224,
             description=f"{label} (torchvision {name}: embed {size.embed_dim}, depths "
                         f"{size.depths}, window 7), 224 px.")(builder)


for _name, _size in SWIN_SIZES.items():
    _register(_name, _size)
