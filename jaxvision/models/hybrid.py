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


# Weight standardization and GroupNorm epsilon of the hybrids' CNN: google-research/
# vision_transformer and big_vision ((w - mean) / (std + 1e-5), GroupNorm eps 1e-6), or timm's
# ``vit_*_r26_s32``/``r50_s16`` (``_resnetv2``: StdConv2dSame (w - mean) / sqrt(var + 1e-8),
# GroupNormAct eps 1e-5). The same weights give different logits under the two.
WEIGHT_STANDARDIZATION = {
    "big_vision": dict(eps=1e-5, eps_in_sqrt=False, norm_epsilon=1e-6),
    "timm": dict(eps=1e-8, eps_in_sqrt=True, norm_epsilon=1e-5),
}


def resnet_backbone(
    stage_sizes: Sequence[int],
    *,
    block=Bottleneck,
    width: int = 64,
    num_groups: int = 32,
    stem_kernel: int = 7,
    stem_pool: bool = True,
    drop_path_rate: float = 0.0,
    weight_standardization: str = "big_vision",
    remat: str = "none",
    dtype=jnp.float32,
    param_dtype=jnp.float32,
) -> ResNetStages:
    """The ViT paper's hybrid CNN: ResNet stem + stages with StdConv, GroupNorm, TF-"SAME"
    padding and zero-initialized last norm of every residual branch; ``weight_standardization``
    ('big_vision' or 'timm', see ``WEIGHT_STANDARDIZATION``) picks the epsilons."""
    if weight_standardization not in WEIGHT_STANDARDIZATION:
        raise ValueError(f"weight_standardization must be one of {sorted(WEIGHT_STANDARDIZATION)}, "
                         f"got {weight_standardization!r}")
    ws = dict(WEIGHT_STANDARDIZATION[weight_standardization])
    norm_epsilon = ws.pop("norm_epsilon")
    return ResNetStages(
        tuple(stage_sizes),
        block=block,
        width=width,
        # StdConv's defaults are big_vision's; timm's differ.
        conv=functools.partial(StdConv, **ws) if weight_standardization == "timm" else StdConv,
        norm=functools.partial(GroupNorm, num_groups=num_groups, epsilon=norm_epsilon),
        padding="SAME",
        stem_kernel=stem_kernel,
        stem_pool=stem_pool,
        zero_init_last=True,
        drop_path_rate=drop_path_rate,
        remat=remat,
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
    width: int = 64,
    weight_standardization: str = "big_vision",
    **vit_kwargs,
) -> VisionTransformer:
    """A ResNet-stages + ViT hybrid with 1x1 patches on the feature map (ViT paper).
    ``vit_kwargs``: ``VisionTransformer`` attributes (they may override the ViT size's shape)."""
    hidden, depth, heads, mlp = VIT_SIZES[vit_size]
    backbone = resnet_backbone(
        stage_sizes, width=width, drop_path_rate=backbone_drop_path_rate,
        weight_standardization=weight_standardization, remat=vit_kwargs.get("remat", "none"),
        dtype=dtype, param_dtype=param_dtype
    )
    shape = dict(patch_size=1, hidden_size=hidden, num_layers=depth, num_heads=heads, mlp_dim=mlp)
    return VisionTransformer(
        num_classes=num_classes,
        backbone=backbone,
        backbone_stride=backbone_stride(len(stage_sizes)),
        dtype=dtype,
        param_dtype=param_dtype,
        **{**shape, **vit_kwargs},
    )


def _register_hybrid(name: str, stage_sizes, vit_size: str, doc: str):
    def build(num_classes, dtype, param_dtype, stage_sizes=stage_sizes, **options):
        return hybrid_vit(tuple(stage_sizes), vit_size, num_classes, dtype, param_dtype, **options)

    # stage_sizes / width change the CNN (e.g. tiny test instances); weight_standardization
    # 'timm' reproduces timm's vit_*_r26_s32 / r50_s16 (what convert sets for timm weights).
    builder = transformer_builder(build, name, doc, extra_options=dict(
        stage_sizes=None, width=None, weight_standardization="big_vision"))
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


def _hybrid_tiny_mnist(num_classes, dtype, param_dtype, **options):
    """Tiny hybrid for mnist5k: 28x28x1 -> StdConv 3x3/2 (32) + GroupNorm(8) -> one basic
    block (14x14x32) -> 2x2 patches (7x7 tokens) -> ViT (width 64, 4 layers, 4 heads, MLP 128).
    ``options``: ``VisionTransformer`` attributes (they may override the shape above)."""
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
        remat=options.get("remat", "none"),
        dtype=dtype,
        param_dtype=param_dtype,
    )
    shape = dict(patch_size=2, hidden_size=64, num_layers=4, num_heads=4, mlp_dim=128)
    return VisionTransformer(
        num_classes=num_classes,
        backbone=backbone,
        backbone_stride=2,
        dtype=dtype,
        param_dtype=param_dtype,
        **{**shape, **options},
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
