"""MaxViT (Tu et al. 2022): a conv stem, then stages of MaxViT blocks (pre-norm MBConv ->
block (window) attention -> grid attention, each attention with relative position bias and an
MLP), global average pool, LayerNorm, a tanh pre-logits layer and the classifier.

Two references, told apart by ``layout`` (``MAXVIT_LAYOUTS``):

* ``'torchvision'`` (``torchvision.models.maxvit_t``): stem conv1 without bias, MBConv shortcut
  3x3/2 average pool (padding 1, zeros counted) + 1x1 conv whenever stride or width change,
  PyTorch padding, BatchNorm eps 1e-3 momentum 0.01, LayerNorm eps 1e-5, exact GELU, attention
  logits scaled by 1 / sqrt(C) (torchvision's ``scale_factor = feat_dim ** -0.5``), classifier
  without bias, normal(0.02) init of every conv and linear layer.
* ``'tf'`` (timm ``maxvit_{tiny,small,base}_tf_224``, the ports of google-research/maxvit):
  stem convs with biases, shortcut 2x2/2 average pool (+ 1x1 conv when the width changes),
  TF "SAME" padding, BatchNorm eps 1e-3, LayerNorm eps 1e-5, tanh-approximate GELU, 1 / sqrt(Dh)
  scale, classifier with bias.

The pre-norm MBConv, the two-conv stem and the norm-MLP head are shared with CoAtNet
(``models.coatnet``), whose timm layout is ``MAXVIT_LAYOUTS['timm']``.
Sizes: T = stem 64, widths 64-128-256-512, depths 2-2-5-2; S = 64, 96-192-384-768, 2-2-5-2;
B = 64, 96-192-384-768, 2-6-14-2; head dim 32, window/grid 7 at 224 px (timm
``model_cfgs``; torchvision ``maxvit_t``). Stochastic depth grows linearly over the blocks to
0.2 (T), 0.3 (S), 0.4 (B) (the paper's ImageNet-1k settings; torchvision's maxvit_t).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxvision.layers import (
    BatchNorm,
    Conv,
    ConvNormAct,
    Dropout,
    DropPath,
    MlpBlock,
    RelativePositionSelfAttention,
    SqueezeExcite,
    avg_pool,
    f32_accumulating_dot_general,
    gelu,
    grid_merge,
    grid_partition,
    window_merge,
    window_partition,
)
from jaxvision.layers.norm import LayerNorm
from jaxvision.models.features import sow_level
from jaxvision.models.input_size import check_input_size
from jaxvision.models.registry import register

__all__ = ["MAXVIT_LAYOUTS", "MAXVIT_SIZES", "MaxViT", "MaxVitLayout", "NormMlpHead",
           "PreNormMBConv", "Stem", "accepts_side", "check_side",
           "drop_path_schedule", "resolve_layout"]


@dataclasses.dataclass(frozen=True)
class MaxVitLayout:
    """Conventions that differ between the MaxViT/CoAtNet references (see the module docstring).

    stem_bias: biases of the stem's (3x3/2, 3x3) convs. shortcut: 'avg3' (torchvision) or
    'avg2' (timm). attention_scale: 'width' (1 / sqrt(C), torchvision) or 'head_dim'.
    init: 'normal' (N(0, 0.02) everywhere, torchvision) or 'timm' (He-normal fan-out convs,
    Xavier-uniform linear layers, MLP biases N(0, 1e-6): timm's 'vit_eff' scheme).
    """

    stem_bias: tuple[bool, bool]
    shortcut: str
    padding: str
    bn_epsilon: float
    bn_momentum: float  # Flax convention (0.99 = PyTorch momentum 0.01)
    layer_norm_epsilon: float
    approximate_gelu: bool
    attention_scale: str
    head_bias: bool
    init: str

    def act(self, x):
        return gelu(x, approximate=self.approximate_gelu)

    def norm(self, bn_axis_name=None):
        return functools.partial(BatchNorm, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                                 axis_name=bn_axis_name)

    @property
    def conv_init(self):
        if self.init == "normal":
            return nn.initializers.normal(0.02)
        return nn.initializers.variance_scaling(2.0, "fan_out", "normal")

    @property
    def dense_init(self):
        return nn.initializers.normal(0.02) if self.init == "normal" else nn.initializers.xavier_uniform()

    @property
    def mlp_bias_init(self):
        return nn.initializers.zeros if self.init == "normal" else nn.initializers.normal(1e-6)


MAXVIT_LAYOUTS = {
    "torchvision": MaxVitLayout((False, True), "avg3", "SYMMETRIC", 1e-3, 0.99, 1e-5, False,
                                "width", False, "normal"),
    "tf": MaxVitLayout((True, True), "avg2", "SAME", 1e-3, 0.99, 1e-5, True, "head_dim", True, "timm"),
    # timm's own CoAtNet / MaxViT configs (``coatnet_0_224`` ...): PyTorch padding and eps.
    "timm": MaxVitLayout((False, False), "avg2", "SYMMETRIC", 1e-5, 0.9, 1e-6, False, "head_dim",
                         True, "timm"),
}


def resolve_layout(layout: str | MaxVitLayout) -> MaxVitLayout:
    """A ``MAXVIT_LAYOUTS`` name (or a layout) -> the layout; ValueError for an unknown name."""
    if isinstance(layout, MaxVitLayout):
        return layout
    if layout not in MAXVIT_LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of {sorted(MAXVIT_LAYOUTS)}")
    return MAXVIT_LAYOUTS[layout]


class Stem(nn.Module):
    """3x3/2 conv -> BatchNorm -> act -> 3x3 conv (no norm after it). (N, H, W, 3) ->
    (N, H/2, W/2, features[1])."""

    features: tuple[int, int]
    layout: MaxVitLayout
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        lay = self.layout
        kw = dict(padding=lay.padding, kernel_init=lay.conv_init, dtype=self.dtype,
                  param_dtype=self.param_dtype)
        x = Conv(self.features[0], 3, 2, use_bias=lay.stem_bias[0], name="conv1", **kw)(x)
        x = lay.norm(self.bn_axis_name)(dtype=self.dtype, param_dtype=self.param_dtype, name="norm1")(x, train)
        x = lay.act(x)
        return Conv(self.features[1], 3, 1, use_bias=lay.stem_bias[1], name="conv2", **kw)(x)


class PreNormMBConv(nn.Module):
    """MaxViT/CoAtNet MBConv: shortcut(x) + DropPath(1x1 conv (bias) <- SE <- act(BN(dw kxk
    (stride))) <- act(BN(1x1 expand)) <- BN(x)). Hidden width ``expand_ratio * features``; SE
    reduces to ``int(se_ratio * features)`` with SiLU (both from the *output* width, as the
    references). Shortcut per ``layout.shortcut`` (module docstring). x (N, H, W, C_in) ->
    (N, H/s, W/s, features)."""

    features: int
    strides: int
    layout: MaxVitLayout
    expand_ratio: float = 4.0
    se_ratio: float = 0.25
    kernel_size: int = 3
    drop_path_rate: float = 0.0
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def _shortcut(self, x):
        lay, c_in = self.layout, x.shape[-1]
        conv = functools.partial(Conv, self.features, 1, use_bias=True, kernel_init=lay.conv_init,
                                 dtype=self.dtype, param_dtype=self.param_dtype, name="shortcut")
        if lay.shortcut == "avg3":  # torchvision
            if self.strides == 1 and c_in == self.features:
                return x
            if self.strides != 1:
                x = avg_pool(x, 3, self.strides, padding=1, count_include_pad=True)
            return conv()(x)
        if self.strides != 1:
            x = avg_pool(x, self.strides, self.strides, padding="SAME" if lay.padding == "SAME" else "VALID")
        return x if c_in == self.features else conv()(x)

    @nn.compact
    def __call__(self, x, train: bool = False):
        lay = self.layout
        x = jnp.asarray(x, self.dtype)
        norm = lay.norm(self.bn_axis_name)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        ckw = dict(norm=norm, act=lay.act, conv=functools.partial(Conv, kernel_init=lay.conv_init), **kw)
        hidden = int(self.expand_ratio * self.features)
        y = norm(name="pre_norm", **kw)(x, train)
        y = ConvNormAct(hidden, 1, 1, "VALID", name="expand", **ckw)(y, train)
        y = ConvNormAct(hidden, self.kernel_size, self.strides, lay.padding, groups=hidden,
                        name="dw", **ckw)(y, train)
        y = SqueezeExcite(int(self.se_ratio * self.features), act=nn.silu, name="se", **kw)(y)
        y = Conv(self.features, 1, padding="VALID", use_bias=True, kernel_init=lay.conv_init,
                 name="project", **kw)(y)
        return self._shortcut(x) + DropPath(self.drop_path_rate)(y, train)


class PartitionAttention(nn.Module):
    """Pre-norm transformer sub-block on a partition of the map: x + DropPath(attn(LN(x))) then
    x + DropPath(MLP(LN(x))), attention within ``partition``x``partition`` windows (``'window'``)
    or grids (``'grid'``, see ``layers.grid_partition``). x (N, H, W, C), H and W multiples of
    ``partition``."""

    partition: str
    size: int
    head_dim: int
    layout: MaxVitLayout
    mlp_ratio: float = 4.0
    dropout_rate: float = 0.0
    drop_path_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        lay = self.layout
        _, h, w, c = x.shape
        p = (self.size, self.size)
        if h % self.size or w % self.size:
            raise ValueError(f"MaxViT {self.partition} attention needs a map divisible by {self.size}, "
                             f"got {h}x{w}")
        split, merge = (window_partition, window_merge) if self.partition == "window" else (grid_partition, grid_merge)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        y = LayerNorm(lay.layer_norm_epsilon, name="norm1", **kw)(x)
        y = RelativePositionSelfAttention(
            c // self.head_dim, p, head_dim=self.head_dim,
            scale=c**-0.5 if lay.attention_scale == "width" else None,
            kernel_init=lay.dense_init, name="attn", **kw)(split(y, p))
        y = Dropout(self.dropout_rate)(merge(y, p, h, w), train)
        x = x + DropPath(self.drop_path_rate)(y, train)
        y = LayerNorm(lay.layer_norm_epsilon, name="norm2", **kw)(x)
        y = MlpBlock(int(c * self.mlp_ratio), dropout_rate=self.dropout_rate, act=lay.act,
                     kernel_init=lay.dense_init, bias_init=lay.mlp_bias_init, name="mlp", **kw)(
            y, deterministic=not train)
        return x + DropPath(self.drop_path_rate)(y, train)


class NormMlpHead(nn.Module):
    """Global average pool -> LayerNorm -> Dense(hidden) ``pre_logits`` -> tanh -> dropout ->
    Dense(num_classes) ``head``. (N, H, W, C) -> (N, num_classes), or the (N, hidden) tanh
    features when ``num_classes == 0`` (timm's ``NormMlpClassifierHead``)."""

    num_classes: int
    hidden: int
    layout: MaxVitLayout
    drop_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        lay = self.layout
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype,
                  dot_general=f32_accumulating_dot_general)
        x = jnp.mean(x, axis=(1, 2), dtype=jnp.float32).astype(x.dtype)
        x = LayerNorm(lay.layer_norm_epsilon, dtype=self.dtype, param_dtype=self.param_dtype,
                         name="norm")(x)
        x = jnp.tanh(nn.Dense(self.hidden, kernel_init=lay.dense_init, name="pre_logits", **kw)(x))
        x = Dropout(self.drop_rate)(x, train)
        if self.num_classes:
            x = nn.Dense(self.num_classes, use_bias=lay.head_bias, kernel_init=lay.dense_init,
                         name="head", **kw)(x)
        return x


def drop_path_schedule(rate: float, depths: Sequence[int]) -> np.ndarray:
    """Per block: linear from 0 to ``rate`` over all blocks (torchvision / timm)."""
    return np.linspace(0.0, rate, sum(depths))


@dataclasses.dataclass(frozen=True)
class MaxVitSize:
    stem_width: int
    embed_dims: tuple[int, ...]
    depths: tuple[int, ...]
    drop_path_rate: float
    layout: str


MAXVIT_SIZES = {
    "maxvit_t": MaxVitSize(64, (64, 128, 256, 512), (2, 2, 5, 2), 0.2, "torchvision"),
    "maxvit_tiny_tf_224": MaxVitSize(64, (64, 128, 256, 512), (2, 2, 5, 2), 0.2, "tf"),
    "maxvit_small_tf_224": MaxVitSize(64, (96, 192, 384, 768), (2, 2, 5, 2), 0.3, "tf"),
    "maxvit_base_tf_224": MaxVitSize(64, (96, 192, 384, 768), (2, 6, 14, 2), 0.4, "tf"),
}


def accepts_side(side: int, partition_size: int = 7, num_stages: int = 4) -> bool:
    """Whether MaxViT takes inputs of this side: the map of every stage, ceil(side / 2^(i + 1))
    for stage i = 1..num_stages (stem and stages halve with 'SAME'-like rounding up), must split
    into ``partition_size`` windows; e.g. 224 and 223 for 7."""
    return side > 0 and all(-(-side // 2 ** (i + 1)) % partition_size == 0
                            for i in range(1, num_stages + 1))


def check_side(height: int, width: int, partition_size: int = 7, num_stages: int = 4) -> None:
    """ValueError naming the nearest valid sides unless ``accepts_side`` takes both."""
    check_input_size(
        "MaxViT", height, width, lambda s: accepts_side(s, partition_size, num_stages),
        f"every stage's map (side / 4 ... side / {2 ** (num_stages + 1)}, rounded up) must split "
        f"into {partition_size}x{partition_size} windows (set partition_size to change this; timm "
        f"uses side / 32)")


class MaxViT(nn.Module):
    """MaxViT. Input (N, H, W, 3) with sides ``accepts_side`` takes (multiples of
    32 * partition_size, 224 for 7); other sides raise ValueError naming the nearest valid ones.
    Output (N, num_classes) logits, or the (N, embed_dims[-1]) pre-logits (after tanh) when
    ``num_classes == 0``. Feature levels: the stem (stride 2), then every stage (4, 8, 16, 32),
    as timm's ``feature_info``.

    Each block of stage i: ``PreNormMBConv`` (stride 2 in the first block) -> window attention
    -> grid attention, all three with the block's stochastic-depth rate.
    """

    stem_width: int = 64
    embed_dims: Sequence[int] = (64, 128, 256, 512)
    depths: Sequence[int] = (2, 2, 5, 2)
    head_dim: int = 32
    partition_size: int = 7
    expand_ratio: float = 4.0
    se_ratio: float = 0.25
    mlp_ratio: float = 4.0
    layout: str | MaxVitLayout = "torchvision"
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
        check_side(x.shape[1], x.shape[2], self.partition_size, len(self.depths))
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = Stem((self.stem_width, self.stem_width), lay, self.bn_axis_name, name="stem", **kw)(x, train)
        sow_level(x)
        rates = drop_path_schedule(self.drop_path_rate, self.depths)
        k = 0
        for i, (width, depth) in enumerate(zip(self.embed_dims, self.depths, strict=True)):
            for j in range(depth):
                name, rate = f"stage{i + 1}_block{j + 1}", float(rates[k])
                x = PreNormMBConv(width, 2 if j == 0 else 1, lay, self.expand_ratio, self.se_ratio,
                                  drop_path_rate=rate, bn_axis_name=self.bn_axis_name,
                                  name=f"{name}_mbconv", **kw)(x, train)
                for part in ("window", "grid"):
                    x = PartitionAttention(part, self.partition_size, self.head_dim, lay,
                                           self.mlp_ratio, self.dropout_rate, rate,
                                           name=f"{name}_{part}_attn", **kw)(x, train)
                k += 1
            sow_level(x)
        return NormMlpHead(self.num_classes, self.embed_dims[-1], lay, self.drop_rate, name="head",
                           **kw)(x, train)


def _register(name: str, size: MaxVitSize):
    def builder(num_classes, dtype, param_dtype, *, stem_width=size.stem_width,
                embed_dims=size.embed_dims, depths=size.depths, head_dim=32, partition_size=7,
                layout=size.layout, drop_rate=0.0, dropout_rate=0.0,
                drop_path_rate=size.drop_path_rate, bn_axis_name=None):
        return MaxViT(stem_width=stem_width, embed_dims=tuple(embed_dims), depths=tuple(depths),
                      head_dim=head_dim, partition_size=partition_size, layout=layout,
                      num_classes=num_classes, drop_rate=drop_rate, dropout_rate=dropout_rate,
                      drop_path_rate=drop_path_rate, bn_axis_name=bn_axis_name, dtype=dtype,
                      param_dtype=param_dtype)

    builder.__name__ = builder.__qualname__ = name
    source = "torchvision maxvit_t" if size.layout == "torchvision" else f"timm {name}"
    register(name, family="maxvit", default_resolution=224,
             description=f"MaxViT ({source}: widths {size.embed_dims}, depths {size.depths}), 224 px.")(builder)


for _name, _size in MAXVIT_SIZES.items():
    _register(_name, _size)
