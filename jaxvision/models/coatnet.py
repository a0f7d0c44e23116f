"""CoAtNet-0..3 (Dai et al. 2021) as timm builds them (``coatnet_{0..3}_224``, the paper's
C-C-T-T layout): a two-conv stem (stride 2), two stages of pre-norm MBConv blocks, two stages of
Transformer blocks with relative attention over the whole feature map, global average pool,
LayerNorm, tanh pre-logits layer and classifier.

Transformer block (timm ``TransformerBlock2d``): the first block of a stage downsamples with a
2x2 average pool on both branches (shortcut: pool + 1x1 conv to the new width; residual:
LayerNorm -> pool -> attention whose heads (of 32 channels) span the *output* width), then
x + DropPath(MLP(LN(x))) with a 4x MLP. The relative position bias covers the whole map (14x14
and 7x7 at 224 px), so its table depends on the input resolution as a ViT's position embedding
does. Conventions: ``MAXVIT_LAYOUTS['timm']`` (BatchNorm eps 1e-5, LayerNorm eps 1e-6, exact
GELU, PyTorch padding, He-normal fan-out convs, Xavier-uniform attention/MLP).

Sizes (timm ``model_cfgs``, the paper's Table 3): 0 = stem 64, widths 96-192-384-768, depths
2-3-5-2; 1 = 64, 96-192-384-768, 2-6-14-2; 2 = 128, 128-256-512-1024, 2-6-14-2; 3 = 192,
192-384-768-1536, 2-6-14-2. Stochastic depth (the paper's ImageNet-1K setting, appendix A.2):
0.2, 0.3, 0.5, 0.7.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.layers import (
    Conv,
    Dropout,
    DropPath,
    MlpBlock,
    RelativePositionSelfAttention,
    avg_pool,
)
from jaxvision.layers.norm import LayerNorm
from jaxvision.models.features import sow_level
from jaxvision.models.input_size import check_input_size
from jaxvision.models.maxvit import (
    MaxVitLayout,
    NormMlpHead,
    PreNormMBConv,
    Stem,
    drop_path_schedule,
    resolve_layout,
)
from jaxvision.models.registry import register

__all__ = ["COATNET_SIZES", "CoAtNet", "RelativeTransformerBlock", "accepts_side", "check_side"]


@dataclasses.dataclass(frozen=True)
class CoAtNetSize:
    stem_width: int
    embed_dims: tuple[int, ...]
    depths: tuple[int, ...]
    drop_path_rate: float


COATNET_SIZES = {
    "coatnet_0": CoAtNetSize(64, (96, 192, 384, 768), (2, 3, 5, 2), 0.2),
    "coatnet_1": CoAtNetSize(64, (96, 192, 384, 768), (2, 6, 14, 2), 0.3),
    "coatnet_2": CoAtNetSize(128, (128, 256, 512, 1024), (2, 6, 14, 2), 0.5),
    "coatnet_3": CoAtNetSize(192, (192, 384, 768, 1536), (2, 6, 14, 2), 0.7),
}


class RelativeTransformerBlock(nn.Module):
    """CoAtNet's Transformer block on a map: x (N, H, W, C_in) -> (N, H/s, W/s, features)
    (see the module docstring). Submodules ``shortcut`` (when the width changes), ``norm1``,
    ``attn``, ``norm2``, ``mlp``."""

    features: int
    strides: int
    layout: MaxVitLayout
    head_dim: int = 32
    mlp_ratio: float = 4.0
    dropout_rate: float = 0.0
    drop_path_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def _pool(self, x):
        return x if self.strides == 1 else avg_pool(x, self.strides, self.strides)

    @nn.compact
    def __call__(self, x, train: bool = False):
        lay = self.layout
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        shortcut = self._pool(x)
        if x.shape[-1] != self.features:
            shortcut = Conv(self.features, 1, padding="VALID", kernel_init=lay.dense_init,
                            name="shortcut", **kw)(shortcut)
        y = self._pool(LayerNorm(lay.layer_norm_epsilon, name="norm1", **kw)(x))
        n, h, w, c = y.shape
        y = RelativePositionSelfAttention(self.features // self.head_dim, (h, w), head_dim=self.head_dim,
                                          out_features=self.features, kernel_init=lay.dense_init,
                                          name="attn", **kw)(y.reshape(n, h * w, c))
        y = Dropout(self.dropout_rate)(y.reshape(n, h, w, self.features), train)
        x = shortcut + DropPath(self.drop_path_rate)(y, train)
        y = LayerNorm(lay.layer_norm_epsilon, name="norm2", **kw)(x)
        y = MlpBlock(int(self.features * self.mlp_ratio), dropout_rate=self.dropout_rate, act=lay.act,
                     kernel_init=lay.dense_init, bias_init=lay.mlp_bias_init, name="mlp", **kw)(
            y, deterministic=not train)
        return x + DropPath(self.drop_path_rate)(y, train)


def accepts_side(side: int, num_stages: int = 4) -> bool:
    """Whether CoAtNet takes inputs of this side: after the stride-2 stem (ceil(side / 2) with
    PyTorch padding) every stage must halve the map evenly, because the MBConv shortcut pools
    with floor and its strided conv rounds up. Accepts exactly the sides timm 1.0's
    ``coatnet_0_224(img_size=side)`` runs at (32k and 32k - 1, e.g. 95, 96, 223, 224)."""
    return side > 0 and -(-side // 2) % 2**num_stages == 0


def check_side(height: int, width: int, num_stages: int = 4) -> None:
    """ValueError naming the nearest valid sides unless ``accepts_side`` takes both."""
    check_input_size(
        "CoAtNet", height, width, lambda s: accepts_side(s, num_stages),
        f"after the stride-2 stem each of its {num_stages} stages halves the map, so ceil(side / 2) "
        f"must be a multiple of {2**num_stages}")


class CoAtNet(nn.Module):
    """CoAtNet. Input (N, H, W, 3), sides with ``accepts_side`` (multiples of 32, or one less;
    224 by default); other sides raise ValueError naming the nearest valid ones. Output
    (N, num_classes) logits, or the (N, embed_dims[-1]) pre-logits (after tanh) when
    ``num_classes == 0``. ``block_types``: 'C' (MBConv) or 'T' (Transformer) per stage.
    ``image_size``: the input side the relative position tables are made for (as timm's
    ``img_size``); another input size raises ValueError (None accepts any). Feature levels: the
    stem (stride 2), then every stage (4, 8, 16, 32), as timm.
    """

    stem_width: int = 64
    embed_dims: Sequence[int] = (96, 192, 384, 768)
    depths: Sequence[int] = (2, 3, 5, 2)
    block_types: Sequence[str] = ("C", "C", "T", "T")
    head_dim: int = 32
    layout: str | MaxVitLayout = "timm"
    image_size: int | None = 224
    num_classes: int = 1000
    drop_rate: float = 0.0
    dropout_rate: float = 0.0
    drop_path_rate: float = 0.2
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        lay = resolve_layout(self.layout)
        check_side(x.shape[1], x.shape[2], len(self.depths))
        if self.image_size and tuple(x.shape[1:3]) != (self.image_size, self.image_size):
            raise ValueError(
                f"CoAtNet built for {self.image_size}x{self.image_size} inputs (its relative position "
                f"tables cover the feature maps) got {x.shape[1]}x{x.shape[2]}: pass "
                f"image_size={x.shape[1]} (or None) to models.create; on the command line "
                f"--config.model.image_size={x.shape[1]}, or leave it unset: training then "
                "builds the model for the data's size")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = Stem((self.stem_width, self.stem_width), lay, self.bn_axis_name, name="stem", **kw)(x, train)
        sow_level(x)
        rates = drop_path_schedule(self.drop_path_rate, self.depths)
        k = 0
        for i, (width, depth, kind) in enumerate(zip(self.embed_dims, self.depths, self.block_types,
                                                      strict=True)):
            for j in range(depth):
                name, strides, rate = f"stage{i + 1}_block{j + 1}", 2 if j == 0 else 1, float(rates[k])
                if kind == "C":
                    x = PreNormMBConv(width, strides, lay, drop_path_rate=rate,
                                      bn_axis_name=self.bn_axis_name, name=name, **kw)(x, train)
                elif kind == "T":
                    x = RelativeTransformerBlock(width, strides, lay, self.head_dim,
                                                 dropout_rate=self.dropout_rate, drop_path_rate=rate,
                                                 name=name, **kw)(x, train)
                else:
                    raise ValueError(f"block type {kind!r}: use 'C' (MBConv) or 'T' (Transformer)")
                k += 1
            sow_level(x)
        return NormMlpHead(self.num_classes, self.embed_dims[-1], lay, self.drop_rate, name="head",
                           **kw)(x, train)


def _register(name: str, size: CoAtNetSize):
    def builder(num_classes, dtype, param_dtype, *, stem_width=size.stem_width,
                embed_dims=size.embed_dims, depths=size.depths, block_types=("C", "C", "T", "T"),
                head_dim=32, layout="timm", image_size=224, drop_rate=0.0, dropout_rate=0.0,
                drop_path_rate=size.drop_path_rate, bn_axis_name=None):
        if image_size:
            check_side(image_size, image_size, len(depths))
        return CoAtNet(stem_width=stem_width, embed_dims=tuple(embed_dims), depths=tuple(depths),
                       block_types=tuple(block_types), head_dim=head_dim, layout=layout,
                       image_size=image_size,
                       num_classes=num_classes, drop_rate=drop_rate, dropout_rate=dropout_rate,
                       drop_path_rate=drop_path_rate, bn_axis_name=bn_axis_name, dtype=dtype,
                       param_dtype=param_dtype)

    builder.__name__ = builder.__qualname__ = name
    register(name, family="coatnet", default_resolution=224, fixed_input_size=True,
             description=f"CoAtNet-{name[-1]} (timm {name}_224: widths {size.embed_dims}, depths "
                         f"{size.depths}, C-C-T-T), 224 px.")(builder)


for _name, _size in COATNET_SIZES.items():
    _register(_name, _size)
