"""CNN/Transformer hybrids of the ViT paper (Dosovitskiy et al., 2021, section 3.1).

A ResNet (weight-standardized convs + GroupNorm, as BiT) computes a feature map; 1x1 patches of it
are the tokens of a ViT encoder. The CNN is the zoo's own ``ResNetStages`` (models/resnet.py)
with ``StdConv``, ``GroupNorm(32, eps=1e-6)``, TF-"SAME" padding and zero-initialized last norms,
exactly google-research/vision_transformer's ``ResidualUnit``/``ResNetStage``:

* ``r50_vit_b16``: stages (3, 4, 9) -> output stride 16 (14x14x1024 at 224 px), ViT-B encoder;
  98,659,112 parameters (vision_transformer's models_test.py).
* ``r26_vit_s32``: stages (2, 2, 2, 2) -> output stride 32 (7x7x2048), ViT-S encoder;
  36,431,912 parameters (same source).
* ``hybrid_tiny_mnist``: a small hybrid for 28x28 grayscale digits (the bundled mnist5k data)
  that trains on a CPU in minutes.

Parameters: ``backbone/...`` (ResNetStages), then those of ``VisionTransformer``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax.numpy as jnp

from jaxvision.layers.blocks import BasicBlock, Bottleneck
from jaxvision.layers.conv import StdConv
from jaxvision.layers.norm import GroupNorm
from jaxvision.models.registry import register
from jaxvision.models.resnet import ResNetStages
from jaxvision.models.vit import VIT_SIZES, VisionTransformer, transformer_builder

__all__ = ["hybrid_vit", "resnet_backbone"]


def resnet_backbone(
    stage_sizes: Sequence[int],
    *,
    block=Bottleneck,
    width: int = 64,
    num_groups: int = 32,
    stem_kernel: int = 7,
    stem_pool: bool = True,
    drop_path_rate: float = 0.0,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
) -> ResNetStages:
    """The ViT paper's hybrid CNN: ResNet stem + stages with StdConv, GroupNorm (eps 1e-6),
    TF-"SAME" padding and zero-initialized last norm of every residual branch."""
    return ResNetStages(
        tuple(stage_sizes),
        block=block,
        width=width,
        conv=StdConv,
        norm=functools.partial(GroupNorm, num_groups=num_groups, epsilon=1e-6),
        padding="SAME",
        stem_kernel=stem_kernel,
        stem_pool=stem_pool,
        zero_init_last=True,
        drop_path_rate=drop_path_rate,
        dtype=dtype,
        param_dtype=param_dtype,
    )


def backbone_stride(num_stages: int, stem_pool: bool = True) -> int:
    """Output stride of ``ResNetStages``: stem conv /2, [max pool /2], /2 per stage after the
    first."""
    return 2 ** (1 + int(stem_pool) + num_stages - 1)


def hybrid_vit(
    stage_sizes: Sequence[int],
    vit_size: str,
    num_classes: int,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    *,
    backbone_drop_path_rate: float = 0.0,
    **vit_kwargs,
) -> VisionTransformer:
    """A ResNet-stages + ViT hybrid with 1x1 patches on the feature map (ViT paper)."""
    hidden, depth, heads, mlp = VIT_SIZES[vit_size]
    backbone = resnet_backbone(
        stage_sizes, drop_path_rate=backbone_drop_path_rate, dtype=dtype, param_dtype=param_dtype
    )
    return VisionTransformer(
        num_classes=num_classes,
        patch_size=1,
        hidden_size=hidden,
        num_layers=depth,
        num_heads=heads,
        mlp_dim=mlp,
        backbone=backbone,
        backbone_stride=backbone_stride(len(stage_sizes)),
        dtype=dtype,
        param_dtype=param_dtype,
        **vit_kwargs,
    )


def _register_hybrid(name: str, stage_sizes, vit_size: str, doc: str):
    builder = transformer_builder(functools.partial(hybrid_vit, stage_sizes, vit_size), name, doc)
    register(name, family="hybrid", default_resolution=224)(builder)


_register_hybrid(
    "r50_vit_b16",
    (3, 4, 9),
    "b",
    "R50+ViT-B/16 hybrid (ViT paper): ResNet stages (3, 4, 9), StdConv + GroupNorm, ViT-B.",
)
_register_hybrid(
    "r26_vit_s32",
    (2, 2, 2, 2),
    "s",
    "R26+ViT-S/32 hybrid (ViT paper): ResNet stages (2, 2, 2, 2), StdConv + GroupNorm, ViT-S.",
)


def _hybrid_tiny_mnist(
    num_classes,
    dtype,
    param_dtype,
    *,
    drop_rate: float,
    drop_path_rate: float,
    dropout_rate: float,
    attn_drop_rate: float,
    scan_layers: bool,
    remat: bool,
    image_size: int | None,
    pool: str,
    posemb: str,
    attention_impl: str,
):
    """Tiny hybrid for mnist5k: 28x28x1 -> StdConv 3x3/2 (32) + GroupNorm(8) -> one basic
    block (14x14x32) -> 2x2 patches (7x7 tokens) -> ViT (width 64, 4 layers, 4 heads, MLP 128)."""
    backbone = ResNetStages(
        (1,),
        block=BasicBlock,
        width=32,
        conv=StdConv,
        norm=functools.partial(GroupNorm, num_groups=8, epsilon=1e-6),
        padding="SAME",
        stem_kernel=3,
        stem_pool=False,
        zero_init_last=True,
        dtype=dtype,
        param_dtype=param_dtype,
    )
    return VisionTransformer(
        num_classes=num_classes,
        patch_size=2,
        hidden_size=64,
        num_layers=4,
        num_heads=4,
        mlp_dim=128,
        backbone=backbone,
        backbone_stride=2,
        image_size=image_size,
        pool=pool,
        posemb=posemb,
        dropout_rate=dropout_rate,
        attn_drop_rate=attn_drop_rate,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
        scan_layers=scan_layers,
        remat=remat,
        attention_impl=attention_impl,
        dtype=dtype,
        param_dtype=param_dtype,
    )


register(
    "hybrid_tiny_mnist",
    family="hybrid",
    default_resolution=28,
    in_channels=1,
    num_classes=10,
    description="Tiny ResNet+ViT hybrid for 28x28 digits (mnist5k): 3x3/2 stem, one basic "
    "block, 2x2 patches, 4-layer ViT of width 64.",
)(transformer_builder(_hybrid_tiny_mnist, "hybrid_tiny_mnist", _hybrid_tiny_mnist.__doc__,
                      default_image_size=28))
