"""MobileViT (Mehta & Rastegari, ICLR 2022): MobileNetV2 inverted residuals + MobileViT blocks.

A MobileViT block mixes local and global information: a 3x3 conv-BN-SiLU and a 1x1 projection to
the transformer width d; the map is unfolded into 2x2 patches and a Transformer attends, for each
pixel position inside a patch, across all patches; the map is folded back, projected to C with a
1x1 conv-BN-SiLU and fused with the block input by a 3x3 conv-BN-SiLU on their concatenation.

Configurations, parameter counts and layer details follow Apple's CVNets and timm's
``mobilevit_{xxs,xs,s}`` (256 px, SiLU, BatchNorm momentum 0.1 (PyTorch) = 0.9 here, eps 1e-5,
4 heads, MLP ratio 2, LayerNorm eps 1e-5, symmetric (PyTorch) padding, inverted residuals with
the 1x1 expansion even in the first block, residual only when stride 1 and channels equal).
Inputs are expected in [0, 1] (mean 0, std 1, as CVNets/timm).

Parameters: ``stem``, ``stages_{i}_{j}`` (MBConv or MobileViTBlock), ``final_conv``, ``head``;
``batch_stats`` for every BatchNorm.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.layers.blocks import ConvNormAct, MBConv
from jaxvision.layers.conv import Conv
from jaxvision.layers.norm import BatchNorm
from jaxvision.layers.transformer import Encoder
from jaxvision.models.features import sow_level
from jaxvision.models.registry import register

__all__ = ["MOBILEVIT_CONFIGS", "MobileViT", "MobileViTBlock"]

# Per model: stem width, expansion ratio of the inverted residuals, final 1x1 width, and
# stages as (kind, channels, blocks, stride, transformer width, transformer depth); a 'vit'
# stage is one strided inverted residual followed by one MobileViT block (timm / CVNets).
MOBILEVIT_CONFIGS = {
    "xxs": dict(
        stem=16,
        expand=2.0,
        final=320,
        stages=(
            ("mv2", 16, 1, 1, None, None),
            ("mv2", 24, 3, 2, None, None),
            ("vit", 48, 1, 2, 64, 2),
            ("vit", 64, 1, 2, 80, 4),
            ("vit", 80, 1, 2, 96, 3),
        ),
    ),
    "xs": dict(
        stem=16,
        expand=4.0,
        final=384,
        stages=(
            ("mv2", 32, 1, 1, None, None),
            ("mv2", 48, 3, 2, None, None),
            ("vit", 64, 1, 2, 96, 2),
            ("vit", 80, 1, 2, 120, 4),
            ("vit", 96, 1, 2, 144, 3),
        ),
    ),
    "s": dict(
        stem=16,
        expand=4.0,
        final=640,
        stages=(
            ("mv2", 32, 1, 1, None, None),
            ("mv2", 64, 3, 2, None, None),
            ("vit", 96, 1, 2, 144, 2),
            ("vit", 128, 1, 2, 192, 4),
            ("vit", 160, 1, 2, 240, 3),
        ),
    ),
}


class MobileViTBlock(nn.Module):
    """Local-global MobileViT block: (N, H, W, C) -> (N, H, W, features or C).

    Attributes:
      transformer_dim: token width d; transformer_depth: encoder layers; num_heads: heads.
      patch_size: unfolding patch side (2 in MobileViT); maps whose sides are not multiples of it
        are resized bilinearly up to the next multiple and back, as timm/CVNets do.
      norm: BatchNorm factory for the convolutions.
    """

    transformer_dim: int
    transformer_depth: int
    features: int | None = None
    patch_size: int = 2
    num_heads: int = 4
    mlp_ratio: float = 2.0
    dropout_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    norm: Any = BatchNorm
    act: Any = nn.silu
    attention_impl: str = "auto"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        n, h, w, c = x.shape
        out = self.features or c
        kw = dict(
            conv=Conv, norm=self.norm, act=self.act, dtype=self.dtype, param_dtype=self.param_dtype
        )
        shortcut = x
        # Local representation.
        y = ConvNormAct(c, 3, padding="SYMMETRIC", name="conv_kxk", **kw)(x, train)
        y = Conv(
            self.transformer_dim,
            1,
            use_bias=False,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="conv_1x1",
        )(y)
        # Unfold: one sequence of patches per pixel position inside a patch.
        p = self.patch_size
        new_h, new_w = math.ceil(h / p) * p, math.ceil(w / p) * p
        resized = (new_h, new_w) != (h, w)
        if resized:
            y = jax.image.resize(y, (n, new_h, new_w, y.shape[-1]), "bilinear", antialias=False)
        tokens = einops.rearrange(y, "n (gh ph) (gw pw) d -> (n ph pw) (gh gw) d", ph=p, pw=p)
        tokens = Encoder(
            num_layers=self.transformer_depth,
            num_heads=self.num_heads,
            mlp_dim=int(self.transformer_dim * self.mlp_ratio),
            dropout_rate=self.dropout_rate,
            attn_drop_rate=self.attn_drop_rate,
            drop_path_rate=self.drop_path_rate,
            drop_path_schedule="constant",
            layer_norm_epsilon=1e-5,
            mlp_act=self.act,
            attention_impl=self.attention_impl,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="transformer",
        )(tokens, deterministic=not train)
        # Fold back to a feature map.
        y = einops.rearrange(
            tokens, "(n ph pw) (gh gw) d -> n (gh ph) (gw pw) d", ph=p, pw=p, gh=new_h // p
        )
        if resized:
            y = jax.image.resize(y, (n, h, w, y.shape[-1]), "bilinear", antialias=False)
        y = ConvNormAct(out, 1, padding="VALID", name="conv_proj", **kw)(y, train)
        return ConvNormAct(out, 3, padding="SYMMETRIC", name="conv_fusion", **kw)(
            jnp.concatenate([shortcut, y], axis=-1), train
        )


class MobileViT(nn.Module):
    """MobileViT classifier: (N, H, W, C) -> logits (N, num_classes) (features (N, final) when
    ``num_classes=0``) in ``dtype``. H and W should be multiples of 32 (256 by default)."""

    num_classes: int
    config: Any
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    dropout_rate: float = 0.0
    attn_drop_rate: float = 0.0
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_axis_name: str | None = None
    attention_impl: str = "auto"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        if x.ndim != 4:
            raise ValueError(f"expected NHWC images (N, H, W, C), got shape {x.shape}")
        cfg = dict(self.config)
        x = jnp.asarray(x, self.dtype)
        norm = functools.partial(
            BatchNorm,
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            axis_name=self.bn_axis_name,
        )
        common = dict(norm=norm, dtype=self.dtype, param_dtype=self.param_dtype)
        x = ConvNormAct(
            cfg["stem"], 3, 2, "SYMMETRIC", act=nn.silu, conv=Conv, name="stem", **common
        )(x, train)
        # Stochastic depth grows linearly over the blocks (timm's ByobNet); a MobileViT block's
        # transformer layers share its rate.
        num_blocks = sum(blocks + (kind == "vit") for kind, _, blocks, *_ in cfg["stages"])
        block_index = 0

        def next_rate():
            nonlocal block_index
            rate = self.drop_path_rate * block_index / max(num_blocks - 1, 1)
            block_index += 1
            return rate

        for i, (kind, channels, blocks, stride, dim, depth) in enumerate(cfg["stages"]):
            for j in range(blocks):
                x = MBConv(
                    channels,
                    expand_ratio=cfg["expand"],
                    kernel_size=3,
                    strides=stride if j == 0 else 1,
                    act=nn.silu,
                    padding="SYMMETRIC",
                    drop_path_rate=next_rate(),
                    name=f"stages_{i}_{j}",
                    **common,
                )(x, train)
            if kind == "vit":
                x = MobileViTBlock(
                    transformer_dim=dim,
                    transformer_depth=depth,
                    dropout_rate=self.dropout_rate,
                    attn_drop_rate=self.attn_drop_rate,
                    drop_path_rate=next_rate(),
                    attention_impl=self.attention_impl,
                    name=f"stages_{i}_{blocks}",
                    **common,
                )(x, train)
            sow_level(x)  # feature levels: every stage's output, strides 2, 4, 8, 16, 32
        x = ConvNormAct(
            cfg["final"], 1, padding="VALID", act=nn.silu, conv=Conv, name="final_conv", **common
        )(x, train)
        x = jnp.mean(x, axis=(1, 2), dtype=jnp.float32).astype(self.dtype)
        if self.num_classes == 0:
            return x
        x = nn.Dropout(self.drop_rate)(x, deterministic=not train)
        return nn.Dense(
            self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype, name="head"
        )(x)


def _register_mobilevit(size: str):
    name = f"mobilevit_{size}"

    def builder(
        num_classes,
        dtype,
        param_dtype,
        *,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        dropout_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
        bn_axis_name: str | None = None,
        attention_impl: str = "auto",
        config: dict | None = None,
    ):
        """``config``: a ``MOBILEVIT_CONFIGS``-shaped dict replacing the size's (e.g. tiny
        instances for tests)."""
        return MobileViT(
            num_classes=num_classes,
            config=config or MOBILEVIT_CONFIGS[size],
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            dropout_rate=dropout_rate,
            attn_drop_rate=attn_drop_rate,
            bn_momentum=bn_momentum,
            bn_epsilon=bn_epsilon,
            bn_axis_name=bn_axis_name,
            attention_impl=attention_impl,
            dtype=dtype,
            param_dtype=param_dtype,
        )

    builder.__name__ = name
    builder.__doc__ = f"MobileViT-{size.upper()} (Mehta & Rastegari 2022), 256 px."
    register(name, family="mobilevit", default_resolution=256)(builder)


for _size in ("xxs", "xs", "s"):
    _register_mobilevit(_size)
