"""MobileViTv2 (Mehta & Rastegari, "Separable Self-attention for Mobile Vision Transformers",
TMLR 2023, arXiv:2206.02680): MobileViT with separable (linear-cost) self-attention.

The network is MobileViT's (``models.mobilevit``): a 3x3/2 stem, inverted residuals, and in the
last three stages one strided inverted residual followed by a MobileViTv2 block. The v2 block
drops v1's input shortcut and fusion conv: depthwise 3x3 conv-BN-SiLU -> 1x1 projection to
d = make_divisible(C / 2) -> unfold into 2x2 patches -> ``depth`` linear Transformer layers ->
GroupNorm -> fold -> 1x1 conv-BN back to C. A linear Transformer layer is pre-norm (GroupNorm
with one group over the whole (pixels, patches, d) sequence of an example) with separable
attention: a 1x1 projection to one context score and d-wide keys and values; the scores are
softmax-normalized over the patches, the keys pooled with them into one context vector per
pixel position, which scales ReLU(values); then a 1x1 output projection. The MLP is 1x1 conv ->
SiLU -> 1x1 conv, ratio 2. There is no final 1x1 conv before pooling.

Widths, layer details, initialization and parameter counts follow timm 1.0
``mobilevitv2_{050,075,100,125,150,175,200}`` (ByobNet: stem int(32 * m), stage widths
int((64, 128, 256, 384, 512) * m), Transformer depths 2, 4, 3, BatchNorm eps 1e-5 (PyTorch;
momentum 0.1 = Flax 0.9), GroupNorm eps 1e-5, symmetric padding; convs He-normal on
fan_out / groups, the head N(0, 0.01), zero biases, the last BatchNorm of every residual
inverted bottleneck zero-initialized; stochastic depth linear over the ByobNet blocks, shared by a
v2 block's Transformer layers). Inputs in [0, 1] (mean 0, std 1), 256 px by default. Feature
maps whose sides are not multiples of 2 are resized bilinearly (align_corners=True) up to the next
multiple before the block, as timm/CVNets do, and stay at that size.

Unlike timm, stochastic depth never drops the whole output of an inverted residual without a
shortcut (timm's ByobNet applies DropPath there too, which zeroes an example's features); it acts
on residual branches only, as in every other jaxvision model.

Parameters: ``stem``, ``stages_{i}_{j}`` (``MBConv`` or ``MobileViTv2Block``), ``head``;
``batch_stats`` for every BatchNorm.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import einops
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxvision.layers.blocks import ConvNormAct, MBConv
from jaxvision.layers.conv import Conv
from jaxvision.layers.dense import f32_accumulating_dot_general
from jaxvision.layers.drop import DropPath
from jaxvision.layers.norm import GroupNorm, batch_norm_of
from jaxvision.models.features import sow_level
from jaxvision.models.mobilenet_v2 import make_divisible
from jaxvision.models.registry import register

__all__ = [
    "MOBILEVITV2_MULTIPLIERS",
    "LinearSelfAttention",
    "LinearTransformerLayer",
    "MobileViTv2",
    "MobileViTv2Block",
    "align_corners_resize",
    "mobilevitv2_config",
]

# Registered name suffix -> width multiplier m (timm ``_mobilevitv2_cfg(m)``).
MOBILEVITV2_MULTIPLIERS = {
    "050": 0.5, "075": 0.75, "100": 1.0, "125": 1.25, "150": 1.5, "175": 1.75, "200": 2.0,
}


def mobilevitv2_config(multiplier: float) -> dict:
    """The architecture of width multiplier ``multiplier`` (timm ``_mobilevitv2_cfg``): stem
    width, inverted-residual expansion, Transformer width ratio (d = make_divisible(ratio * C)),
    and stages as (kind, channels, inverted residuals, stride, Transformer depth); a 'vit' stage
    adds one MobileViTv2 block after its inverted residuals."""
    c = tuple(int(w * multiplier) for w in (64, 128, 256, 384, 512))
    return dict(
        stem=int(32 * multiplier),
        expand=2.0,
        transformer_ratio=0.5,
        stages=(
            ("mv2", c[0], 1, 1, None),
            ("mv2", c[1], 2, 2, None),
            ("vit", c[2], 1, 2, 2),
            ("vit", c[3], 1, 2, 4),
            ("vit", c[4], 1, 2, 3),
        ),
    )


def byob_conv(features, kernel_size=3, *, groups: int = 1, **kwargs) -> Conv:
    """``layers.Conv`` with timm ByobNet's init: N(0, 2 / fan_out), fan_out = k * k * C_out /
    groups (untruncated; Flax's fan_out omits the division, hence the scale 2 * groups)."""
    init = nn.initializers.variance_scaling(2.0 * groups, "fan_out", "normal")
    return Conv(features, kernel_size, groups=groups, kernel_init=init, **kwargs)


# 1x1 convs of the Transformer on tokens (Dense): the same He-normal on fan_out.
_token_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of 1-D linear interpolation with aligned corners: output i samples
    input position i * (n_in - 1) / (n_out - 1) (PyTorch ``align_corners=True``)."""
    pos = np.arange(n_out) * ((n_in - 1) / max(n_out - 1, 1))
    lo = np.minimum(np.floor(pos).astype(int), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    m = np.zeros((n_out, n_in), np.float64)
    m[np.arange(n_out), lo] += 1.0 - frac
    m[np.arange(n_out), hi] += frac
    return m.astype(np.float32)


def align_corners_resize(x: jnp.ndarray, size: tuple[int, int]) -> jnp.ndarray:
    """Bilinear resize of x (N, H, W, C) to (N, size[0], size[1], C) with aligned corners
    (``F.interpolate(mode='bilinear', align_corners=True)``; ``jax.image.resize`` has only
    half-pixel centers). Separable: one small matrix per axis."""
    mh = jnp.asarray(_interpolation_matrix(x.shape[1], size[0]), x.dtype)
    mw = jnp.asarray(_interpolation_matrix(x.shape[2], size[1]), x.dtype)
    return jnp.einsum("ih,jw,nhwc->nijc", mh, mw, x)


class LinearSelfAttention(nn.Module):
    """Separable self-attention: tokens (N, P, M, d) -> (N, P, M, d), linear in the M patches.

    ``qkv`` (d -> 1 + 2d: context score, keys, values), softmax of the scores over M, context
    vector sum_M(keys * scores) (N, P, 1, d), output ``out_proj``(ReLU(values) * context).
    """

    attn_drop_rate: float = 0.0
    proj_drop_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        d = x.shape[-1]
        dense = functools.partial(nn.Dense, kernel_init=_token_init, dtype=self.dtype,
                                  param_dtype=self.param_dtype,
                                  dot_general=f32_accumulating_dot_general)
        qkv = dense(1 + 2 * d, name="qkv")(x)
        query, key, value = qkv[..., :1], qkv[..., 1 : 1 + d], qkv[..., 1 + d :]
        # softmax over the patches, in float32 whatever the compute dtype
        scores = nn.softmax(query.astype(jnp.float32), axis=2).astype(self.dtype)
        scores = nn.Dropout(self.attn_drop_rate)(scores, deterministic=not train)
        context = jnp.sum(key * scores, axis=2, keepdims=True)
        out = dense(d, name="out_proj")(nn.relu(value) * context)
        return nn.Dropout(self.proj_drop_rate)(out, deterministic=not train)


class LinearTransformerLayer(nn.Module):
    """Pre-norm layer of MobileViTv2: x + DropPath(attn(GN(x))), then + DropPath(mlp(GN(x))).
    x (N, P, M, d) -> same; GroupNorm with one group normalizes each example as a whole."""

    mlp_ratio: float = 2.0
    dropout_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        d = x.shape[-1]
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        norm = functools.partial(GroupNorm, num_groups=1, epsilon=1e-5, **kw)
        dense = functools.partial(nn.Dense, kernel_init=_token_init,
                                  dot_general=f32_accumulating_dot_general, **kw)
        y = LinearSelfAttention(self.attn_drop_rate, self.dropout_rate, name="attn", **kw)(
            norm(name="norm1")(x), train)
        x = x + DropPath(self.drop_path_rate)(y, train)
        y = dense(int(d * self.mlp_ratio), name="fc1")(norm(name="norm2")(x))
        y = nn.Dropout(self.dropout_rate)(nn.silu(y), deterministic=not train)
        y = nn.Dropout(self.dropout_rate)(dense(d, name="fc2")(y), deterministic=not train)
        return x + DropPath(self.drop_path_rate)(y, train)


class MobileViTv2Block(nn.Module):
    """(N, H, W, C) -> (N, H', W', features or C) with H', W' = H, W rounded up to multiples of
    ``patch_size``. Submodules ``conv_kxk``, ``conv_1x1``, ``transformer_{k}``, ``norm``,
    ``conv_proj``."""

    transformer_dim: int
    transformer_depth: int
    features: int | None = None
    patch_size: int = 2
    mlp_ratio: float = 2.0
    dropout_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    norm: Any = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        n, h, w, c = x.shape
        p = self.patch_size
        new_h, new_w = math.ceil(h / p) * p, math.ceil(w / p) * p
        if (new_h, new_w) != (h, w):
            x = align_corners_resize(x, (new_h, new_w))
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        cna = functools.partial(ConvNormAct, conv=byob_conv, norm=self.norm, padding="SYMMETRIC",
                                **kw)
        y = cna(c, 3, groups=c, act=nn.silu, name="conv_kxk")(x, train)
        y = byob_conv(self.transformer_dim, 1, use_bias=False, name="conv_1x1", **kw)(y)
        # Unfold: (pixel position inside a patch, patch index), as timm's [B, C, P, N].
        y = einops.rearrange(y, "n (gh ph) (gw pw) d -> n (ph pw) (gh gw) d", ph=p, pw=p)
        for k in range(self.transformer_depth):
            y = LinearTransformerLayer(self.mlp_ratio, self.dropout_rate, self.attn_drop_rate,
                                       self.drop_path_rate, name=f"transformer_{k}", **kw)(y, train)
        y = GroupNorm(num_groups=1, epsilon=1e-5, name="norm", **kw)(y)
        y = einops.rearrange(y, "n (ph pw) (gh gw) d -> n (gh ph) (gw pw) d", ph=p, gh=new_h // p)
        return cna(self.features or c, 1, act=None, name="conv_proj")(y, train)


class MobileViTv2(nn.Module):
    """MobileViTv2 classifier: (N, H, W, 3) -> logits (N, num_classes) (pooled features (N, C)
    when ``num_classes=0``) in ``dtype``. ``config``: see ``mobilevitv2_config``."""

    num_classes: int
    config: Any
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    dropout_rate: float = 0.0
    attn_drop_rate: float = 0.0
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def _block_rates(self, cfg) -> list[float]:
        """Stochastic depth per ByobNet block, linear from 0 to ``drop_path_rate`` (timm)."""
        n = sum(blocks + (kind == "vit") for kind, _, blocks, *_ in cfg["stages"])
        return [self.drop_path_rate * i / max(n - 1, 1) for i in range(n)]

    @nn.compact
    def __call__(self, x, train: bool = False):
        if x.ndim != 4:
            raise ValueError(f"expected NHWC images (N, H, W, C), got shape {x.shape}")
        cfg = dict(self.config)
        x = jnp.asarray(x, self.dtype)
        common = dict(norm=batch_norm_of(self), dtype=self.dtype, param_dtype=self.param_dtype)
        x = ConvNormAct(cfg["stem"], 3, 2, "SYMMETRIC", act=nn.silu, conv=byob_conv, name="stem",
                        **common)(x, train)
        rates = iter(self._block_rates(cfg))
        for i, (kind, channels, blocks, stride, depth) in enumerate(cfg["stages"]):
            for j in range(blocks):
                s, c_in = (stride if j == 0 else 1), x.shape[-1]
                residual = s == 1 and c_in == channels
                x = MBConv(channels, hidden_features=make_divisible(c_in * cfg["expand"]),
                           kernel_size=3, strides=s, act=nn.silu, padding="SYMMETRIC",
                           drop_path_rate=next(rates), zero_init_last=residual, conv=byob_conv,
                           name=f"stages_{i}_{j}", **common)(x, train)
            if kind == "vit":
                x = MobileViTv2Block(
                    transformer_dim=make_divisible(cfg["transformer_ratio"] * channels),
                    transformer_depth=depth, dropout_rate=self.dropout_rate,
                    attn_drop_rate=self.attn_drop_rate, drop_path_rate=next(rates),
                    name=f"stages_{i}_{blocks}", **common)(x, train)
            sow_level(x)  # feature levels: every stage's output, strides 2, 4, 8, 16, 32
        x = jnp.mean(x, axis=(1, 2), dtype=jnp.float32).astype(self.dtype)
        if self.num_classes == 0:
            return x
        x = nn.Dropout(self.drop_rate)(x, deterministic=not train)
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(0.01),
                        dtype=self.dtype, param_dtype=self.param_dtype, name="head")(x)


def _register(suffix: str, multiplier: float):
    name = f"mobilevitv2_{suffix}"

    def builder(num_classes, dtype, param_dtype, *, drop_rate: float = 0.0,
                drop_path_rate: float = 0.0, dropout_rate: float = 0.0,
                attn_drop_rate: float = 0.0, bn_momentum: float = 0.9, bn_epsilon: float = 1e-5,
                bn_axis_name: str | None = None, config: dict | None = None):
        """``config``: a ``mobilevitv2_config``-shaped dict replacing the size's (e.g. tiny
        instances for tests)."""
        return MobileViTv2(
            num_classes=num_classes, config=config or mobilevitv2_config(multiplier),
            drop_rate=drop_rate, drop_path_rate=drop_path_rate, dropout_rate=dropout_rate,
            attn_drop_rate=attn_drop_rate, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon,
            bn_axis_name=bn_axis_name, dtype=dtype, param_dtype=param_dtype)

    builder.__name__ = name
    builder.__doc__ = f"MobileViTv2-{multiplier:g} (Mehta & Rastegari 2023), 256 px."
    register(name, family="mobilevit_v2", default_resolution=256)(builder)


for _suffix, _multiplier in MOBILEVITV2_MULTIPLIERS.items():
    _register(_suffix, _multiplier)
