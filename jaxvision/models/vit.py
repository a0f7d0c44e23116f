"""Vision Transformer (Dosovitskiy et al., 2021; DeiT, Touvron et al., 2021).

Architecture and parameter counts equal google-research/vision_transformer and timm
(``vit_{tiny,small,base,large}_patch{16,32}_224``): patch conv, class token, learned position
embeddings covering the class token, pre-norm encoder (LayerNorm eps 1e-6), final LayerNorm,
class-token pooling, zero-initialized linear ``head``. ``VisionTransformer`` also takes a CNN
``backbone`` whose feature map is patchified; that is the hybrid of ``models/hybrid.py``.

Feature levels (``features_only``): every encoder block's output as a patch-token map (stride =
the patch size times the backbone's stride), timm's convention; hybrids first give their CNN's.

Parameters (``params``):
  [backbone/...]  the hybrid's CNN
  patch_embed/proj  conv (p, p, C, D)
  cls/cls  (1, 1, D)                      with pool='token'
  pos_embed/embedding  (1, 1 + h*w, D)    learned, for the grid of ``image_size``
  encoder/block_{i}/... or encoder/blocks/... (scanned: leading axis = depth), encoder/norm
  head  Dense (D, num_classes)
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.layers.dense import f32_accumulating_dot_general
from jaxvision.layers.patch import (
    POS_EMBED_MODULE,
    ClassToken,
    PatchEmbed,
    PositionEmbedding,
    pool_tokens,
)
from jaxvision.layers.transformer import Encoder
from jaxvision.models.registry import register

__all__ = ["VIT_SIZES", "VisionTransformer", "vit"]

# name: (hidden size D, depth, heads, MLP width) -- ViT paper Table 1, DeiT Table 1 (Ti, S).
VIT_SIZES = {
    "ti": (192, 12, 3, 768),
    "s": (384, 12, 6, 1536),
    "b": (768, 12, 12, 3072),
    "l": (1024, 24, 16, 4096),
}


class VisionTransformer(nn.Module):
    """ViT classifier: (N, H, W, C) -> logits (N, num_classes) or features (N, D) when
    ``num_classes=0``, in ``dtype``; parameters in ``param_dtype``.

    Attributes:
      patch_size: patch side p (on the backbone's feature map for hybrids).
      hidden_size, num_layers, num_heads, mlp_dim: the encoder's shape.
      image_size: resolution the learned position embedding is made for (grid =
        image_size / (backbone_stride * p)); other input sizes interpolate it. ``None``: the
        resolution of the input at initialization.
      pool: ``'token'`` (class token) or ``'gap'`` (mean of patch tokens, no class token).
      posemb: ``'learned'`` or ``'sincos2d'``.
      dropout_rate: dropout on the embedded tokens and inside the encoder (ViT paper).
      attn_drop_rate: dropout on attention weights.
      drop_rate: dropout on the pooled features before ``head``.
      drop_path_rate: stochastic depth of the last block (linear over depth).
      scan_layers, remat: see ``layers.transformer.Encoder``.
      backbone: optional CNN module called as ``backbone(x, train=train)`` -> feature map.
      backbone_stride: its total stride (for the position-embedding grid).
      distilled: DeiT's distillation token after the class token, with its own head
        ``head_dist``; the output is the mean of the two heads' logits (timm's
        ``VisionTransformerDistilled`` in eval mode), the features the mean of the two tokens.
    """

    num_classes: int
    patch_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    mlp_dim: int
    image_size: int | None = 224
    pool: str = "token"
    posemb: str = "learned"
    dropout_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    scan_layers: bool = False
    remat: bool | str = "none"
    attention_impl: str = "auto"
    backbone: nn.Module | None = None
    backbone_stride: int = 1
    distilled: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        if x.ndim != 4:
            raise ValueError(f"expected NHWC images (N, H, W, C), got shape {x.shape}")
        x = jnp.asarray(x, self.dtype)
        if self.backbone is not None:
            x = self.backbone(x, train=train)
        tokens, grid = PatchEmbed(
            self.patch_size,
            self.hidden_size,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="patch_embed",
        )(x)
        num_prefix = 0
        if self.pool == "token":
            if self.distilled:  # DeiT: [class, distillation, patches]
                tokens = ClassToken(param_dtype=self.param_dtype, name="dist")(tokens)
            tokens = ClassToken(param_dtype=self.param_dtype, name="cls")(tokens)
            num_prefix = 2 if self.distilled else 1
        elif self.pool != "gap":
            raise ValueError(f"unknown pool {self.pool!r}; use 'token' or 'gap'")
        elif self.distilled:
            raise ValueError("a distilled ViT pools its class and distillation tokens: pool='token'")
        stored_grid = None
        if self.image_size is not None:
            side = self.image_size // (self.backbone_stride * self.patch_size)
            stored_grid = (side, side)
        tokens = PositionEmbedding(
            kind=self.posemb,
            grid_size=stored_grid,
            num_prefix_tokens=num_prefix,
            param_dtype=self.param_dtype,
            name=POS_EMBED_MODULE,
        )(tokens, grid)
        tokens = nn.Dropout(self.dropout_rate)(tokens, deterministic=not train)
        tokens = Encoder(
            num_layers=self.num_layers,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            dropout_rate=self.dropout_rate,
            attn_drop_rate=self.attn_drop_rate,
            drop_path_rate=self.drop_path_rate,
            scan_layers=self.scan_layers,
            remat=self.remat,
            attention_impl=self.attention_impl,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="encoder",
        )(tokens, deterministic=not train, feature_grid=grid, num_prefix_tokens=num_prefix)
        features = pool_tokens(tokens, self.pool, num_prefix)
        head = functools.partial(
            nn.Dense,
            self.num_classes,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=nn.initializers.zeros,
            dot_general=f32_accumulating_dot_general,
        )
        dropout = nn.Dropout(self.drop_rate, deterministic=not train)
        if self.distilled:  # DeiT's two heads, averaged (timm's inference and non-KD output)
            if self.num_classes == 0:
                return (features + tokens[:, 1]) / 2
            return (head(name="head")(dropout(features))
                    + head(name="head_dist")(dropout(tokens[:, 1]))) / 2
        if self.num_classes == 0:
            return features
        return head(name="head")(dropout(features))


def vit(
    size: str,
    patch_size: int,
    num_classes: int,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    **kwargs,
) -> VisionTransformer:
    """A ViT of a named size (``VIT_SIZES``: 'ti', 's', 'b', 'l') and patch size; ``kwargs``
    (``VisionTransformer`` attributes) may also override the size's ``hidden_size``,
    ``num_layers``, ``num_heads`` and ``mlp_dim``."""
    hidden, depth, heads, mlp = VIT_SIZES[size]
    shape = dict(hidden_size=hidden, num_layers=depth, num_heads=heads, mlp_dim=mlp)
    return VisionTransformer(
        num_classes=num_classes,
        patch_size=patch_size,
        dtype=dtype,
        param_dtype=param_dtype,
        **{**shape, **kwargs},
    )


# Options of every transformer builder, with their defaults (None: the registered model's own).
TRANSFORMER_OPTIONS = dict(
    drop_rate=0.0, drop_path_rate=0.0, dropout_rate=0.0, attn_drop_rate=0.0, scan_layers=False,
    remat="none", pool="token", posemb="learned", attention_impl="auto",
    # Architecture (e.g. tiny instances for tests): the encoder's shape and the patch size.
    hidden_size=None, num_layers=None, num_heads=None, mlp_dim=None, patch_size=None,
)


def transformer_builder(build, name: str, doc: str, default_image_size: int | None = 224,
                        extra_options: dict[str, Any] | None = None):
    """A registry builder taking the transformer overrides (``TRANSFORMER_OPTIONS``, ``image_size``
    and ``extra_options``) as named keywords (its signature lists them, so that
    ``models.create`` names the accepted ones) and calling
    ``build(num_classes, dtype, param_dtype, **options)`` with the options that are not None;
    shared by the ViTs and the hybrids. ``bn_axis_name`` is accepted and ignored (no BatchNorm)."""
    defaults = {**TRANSFORMER_OPTIONS, "image_size": default_image_size, **(extra_options or {}),
                "bn_axis_name": None}

    def builder(num_classes, dtype, param_dtype, **options):
        options = {**defaults, **options}
        del options["bn_axis_name"]
        # image_size=None is meaningful (the input's resolution); other Nones mean 'the default'.
        kept = {k: v for k, v in options.items() if v is not None or k == "image_size"}
        return build(num_classes, dtype, param_dtype, **kept)

    positional = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                  for n in ("num_classes", "dtype", "param_dtype")]
    builder.__signature__ = inspect.Signature(positional + [
        inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in defaults.items()
    ])
    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = doc
    return builder


def _sized_vit(size: str, patch: int):
    def build(num_classes, dtype, param_dtype, patch_size=patch, **options):
        return vit(size, patch_size, num_classes, dtype, param_dtype, **options)

    return build


def _register_vit(size: str, patch: int, long_name: str):
    name = f"vit_{size}{patch}"
    builder = transformer_builder(
        _sized_vit(size, patch), name,
        f"{long_name} (ViT-{size.upper()}/{patch}), 224 px, class token.")
    register(name, family="vit", default_resolution=224)(builder)


for _size, _long in (("ti", "ViT-Tiny"), ("s", "ViT-Small"), ("b", "ViT-Base"), ("l", "ViT-Large")):
    for _patch in (16, 32):
        _register_vit(_size, _patch, _long)


def _sized_deit(size: str):
    def build(num_classes, dtype, param_dtype, patch_size=16, **options):
        return vit(size, patch_size, num_classes, dtype, param_dtype, distilled=True, **options)

    return build


# DeiT with distillation token (Touvron et al. 2021), timm deit_{tiny,small,base}_distilled_patch16_224.
for _size, _long in (("ti", "DeiT-Ti"), ("s", "DeiT-S"), ("b", "DeiT-B")):
    register(f"deit_{_size}_distilled", family="deit", default_resolution=224)(transformer_builder(
        _sized_deit(_size), f"deit_{_size}_distilled",
        f"{_long} distilled (class + distillation tokens, two heads averaged), 224 px."))
