"""FastViT (Vasu et al. 2023, "FastViT: A Fast Hybrid Vision Transformer using Structural
Reparameterization") as timm 1.0 builds it (``fastvit_t8``, ``fastvit_t12``, ``fastvit_sa12``),
in its train-time (multi-branch) form.

* Stem: three MobileOne blocks (3x3/2 full conv, 3x3/2 depthwise, 1x1), each the sum of a
  kxk conv+BN branch, a 1x1 conv+BN "scale" branch (kxk > 1) and a BN "identity" branch (same
  width, stride 1), then GELU.
* Stages 1-4 (widths ``embed_dims``, strides 4, 8, 16, 32): stages 2-4 start with a patch
  embedding (7x7/2 grouped conv+BN plus a 3x3/2 conv+BN branch, then a 1x1 MobileOne block with
  GELU). T8/T12 use RepMixer blocks everywhere: ``x = x + ls * (mixer(x) - BN(x))`` with a
  depthwise 3x3 MobileOne ``mixer``, then ``x + DropPath(ls * ConvMlp(x))``. SA12's last stage
  starts with a conditional positional encoding (RepCPE, ``x + dwconv7x7(x)``) and uses
  attention blocks: ``x + DropPath(ls1 * MHSA(BN(x)))`` (heads of 32 channels, no qkv bias),
  then the ConvMlp branch. ConvMlp: depthwise 7x7 conv+BN -> 1x1 (ratio x) -> GELU -> 1x1.
* Head: a 3x3 MobileOne block doubling the width (grouped, squeeze-excite with C/16 channels,
  GELU), global average pool, dropout, linear classifier.

Every multi-branch part folds into one convolution for inference (MobileOne blocks, patch
embeddings, RepMixers, RepCPE): ``models.create(name, inference_mode=True)`` builds that form and
``jaxvision.models.fastvit_reparam.reparameterize(variables)`` (timm's ``reparameterize_model``)
turns train-form variables into its variables, with equal eval-mode logits.

Conventions (timm): BatchNorm eps 1e-5 (Flax momentum 0.9 = PyTorch 0.1), exact GELU, PyTorch
symmetric padding, layer scale init 1e-5, trunc_normal(0.02) for linear layers and for the
ConvMlp convolutions (biases 0), PyTorch's default (kaiming-uniform, a = sqrt(5)) for the other
convolutions (their biases here start at 0). Stochastic depth grows linearly over all blocks.
Sizes (timm ``fastvit_*``): T8 = depths 2-2-4-2, widths 48-96-192-384, MLP ratio 3; T12 =
2-2-6-2, 64-128-256-512, ratio 3; SA12 = 2-2-6-2, 64-128-256-512, ratio 4, RepCPE + attention in
stage 4. Default input 256 px (timm's pretrained config).

Parameter paths mirror timm's module names: ``stem_{0,1,2}``, ``stage{i}_downsample/{lkc,pw}``,
``stage4_pos_emb``, ``stage{i}_block{j}/{token_mixer,norm,mlp,layer_scale*}``, ``final_conv``,
``head`` (``jaxvision.convert.torch_fastvit``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.layers import (
    BatchNorm,
    Conv,
    ConvNormAct,
    Dropout,
    DropPath,
    SqueezeExcite,
    dot_product_attention,
    global_avg_pool,
)
from jaxvision.layers.dense import f32_accumulating_dot_general
from jaxvision.layers.transformer import gelu_exact
from jaxvision.models.features import sow_level
from jaxvision.models.maxvit import drop_path_schedule
from jaxvision.models.registry import register

__all__ = ["FASTVIT_SIZES", "FastViT", "FastViTSize", "MobileOneBlock"]

# PyTorch's default Conv2d init (kaiming_uniform with a = sqrt(5)): timm leaves FastViT's
# MobileOne/patch-embedding convolutions at it.
torch_default_conv_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
_TRUNC = nn.initializers.truncated_normal(0.02)  # timm trunc_normal_(std=0.02)
_LAYER_SCALE_INIT = 1e-5  # timm layer_scale_init_value


@dataclasses.dataclass(frozen=True)
class FastViTSize:
    depths: tuple[int, ...]
    embed_dims: tuple[int, ...]
    mlp_ratio: float
    token_mixers: tuple[str, ...]


FASTVIT_SIZES = {
    "fastvit_t8": FastViTSize((2, 2, 4, 2), (48, 96, 192, 384), 3.0, ("repmixer",) * 4),
    "fastvit_t12": FastViTSize((2, 2, 6, 2), (64, 128, 256, 512), 3.0, ("repmixer",) * 4),
    "fastvit_sa12": FastViTSize((2, 2, 6, 2), (64, 128, 256, 512), 4.0,
                                ("repmixer", "repmixer", "repmixer", "attention")),
}


class _Module(nn.Module):
    """Shared fields: BatchNorm's pmap axis and the compute/parameter dtypes."""

    inference_mode: bool = dataclasses.field(default=False, kw_only=True)
    bn_axis_name: str | None = dataclasses.field(default=None, kw_only=True)
    dtype: Any = dataclasses.field(default=jnp.float32, kw_only=True)
    param_dtype: Any = dataclasses.field(default=jnp.float32, kw_only=True)

    @property
    def kw(self) -> dict:
        return dict(dtype=self.dtype, param_dtype=self.param_dtype)

    @property
    def sub(self) -> dict:
        """Fields every FastViT submodule inherits."""
        return dict(inference_mode=self.inference_mode, bn_axis_name=self.bn_axis_name, **self.kw)

    def reparam_conv(self, features, kernel_size, strides, groups):
        """The inference-time form's single conv with bias (``fastvit_reparam.reparameterize``)."""
        return Conv(features, kernel_size, strides, padding="SYMMETRIC", groups=groups,
                    kernel_init=torch_default_conv_init, name="reparam_conv", **self.kw)

    def bn(self, name: str) -> BatchNorm:
        return BatchNorm(axis_name=self.bn_axis_name, name=name, **self.kw)

    def conv_bn(self, features, kernel_size, strides, groups, name, kernel_init=torch_default_conv_init):
        """timm ``ConvNormAct(apply_act=False)``: conv without bias, BatchNorm."""
        return ConvNormAct(features, kernel_size, strides, padding="SYMMETRIC", groups=groups,
                           act=None, conv=functools.partial(Conv, kernel_init=kernel_init),
                           norm=functools.partial(BatchNorm, axis_name=self.bn_axis_name),
                           name=name, **self.kw)


class MobileOneBlock(_Module):
    """MobileOne block (Vasu et al. 2023, "An Improved One Millisecond Mobile Backbone"), train
    form: act(SE(BN(x) + sum_b BN_b(conv_kxk_b(x)) + BN(conv1x1(x)))). x (N, H, W, C_in) ->
    (N, H/strides, W/strides, features). The identity branch exists when C_in == features and
    strides == 1; the 1x1 scale branch when kernel_size > 1 and ``use_scale_branch``.
    Submodules (timm names): ``identity``, ``conv_kxk_{b}``, ``conv_scale``, ``se``."""

    features: int
    kernel_size: int
    strides: int = 1
    groups: int = 1
    use_se: bool = False
    use_act: bool = True
    use_scale_branch: bool = True
    num_conv_branches: int = 1

    @nn.compact
    def __call__(self, x, train: bool = False):
        if self.inference_mode:
            out = self.reparam_conv(self.features, self.kernel_size, self.strides, self.groups)(x)
        else:
            out = self._branches(x, train)
        if self.use_se:
            # timm SqueezeExcite(out_chs, rd_divisor=1): round(C / 16) channels, ReLU, sigmoid.
            out = SqueezeExcite(max(1, int(self.features / 16 + 0.5)), name="se", **self.kw)(out)
        return gelu_exact(out) if self.use_act else out

    def _branches(self, x, train):
        out = 0.0
        if x.shape[-1] == self.features and self.strides == 1:
            out = self.bn("identity")(x, train)
        if self.kernel_size > 1 and self.use_scale_branch:
            out = out + self.conv_bn(self.features, 1, self.strides, self.groups, "conv_scale")(x, train)
        for b in range(self.num_conv_branches):
            out = out + self.conv_bn(self.features, self.kernel_size, self.strides, self.groups,
                                     f"conv_kxk_{b}")(x, train)
        return out


class PatchEmbed(_Module):
    """Downsampling at the start of stages 2-4: ``lkc`` (7x7/2 conv+BN + 3x3/2 conv+BN, grouped
    by the input width; timm ``ReparamLargeKernelConv``) then ``pw`` (1x1 MobileOne block with
    GELU). (N, H, W, C) -> (N, H/2, W/2, features)."""

    features: int
    patch_size: int = 7
    strides: int = 2
    small_kernel: int = 3

    @nn.compact
    def __call__(self, x, train: bool = False):
        groups = x.shape[-1]
        if self.inference_mode:
            y = self.reparam_conv(self.features, self.patch_size, self.strides, groups)(x)
        else:
            y = self.conv_bn(self.features, self.patch_size, self.strides, groups, "large_conv")(x, train)
            y = y + self.conv_bn(self.features, self.small_kernel, self.strides, groups,
                                 "small_conv")(x, train)
        return MobileOneBlock(self.features, 1, name="pw", **self.sub)(y, train)


class RepMixer(_Module):
    """x + layer_scale * (mixer(x) - norm(x)): ``mixer`` a depthwise 3x3 MobileOne block without
    activation, ``norm`` its identity (BatchNorm) branch alone. (N, H, W, C) -> same."""

    kernel_size: int = 3

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = x.shape[-1]
        if self.inference_mode:
            return self.reparam_conv(c, self.kernel_size, 1, c)(x)
        block = functools.partial(MobileOneBlock, c, self.kernel_size, groups=c, use_act=False,
                                  bn_axis_name=self.bn_axis_name, **self.kw)
        norm = block(use_scale_branch=False, num_conv_branches=0, name="norm")(x, train)
        mixer = block(name="mixer")(x, train)
        gamma = self.param("layer_scale", nn.initializers.constant(_LAYER_SCALE_INIT), (c,),
                           self.param_dtype)
        return x + gamma.astype(x.dtype) * (mixer - norm)


class ConvMlp(_Module):
    """Depthwise 7x7 conv+BN -> 1x1 conv (hidden) -> GELU -> dropout -> 1x1 conv -> dropout.
    (N, H, W, C) -> same. Submodules ``conv``, ``fc1``, ``fc2`` (timm ``ConvMlp``)."""

    hidden: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = x.shape[-1]
        x = self.conv_bn(c, 7, 1, c, "conv", kernel_init=_TRUNC)(x, train)
        fc = functools.partial(Conv, kernel_size=1, padding="VALID", kernel_init=_TRUNC, **self.kw)
        x = Dropout(self.dropout_rate)(gelu_exact(fc(self.hidden, name="fc1")(x)), train)
        return Dropout(self.dropout_rate)(fc(c, name="fc2")(x), train)


class Attention(_Module):
    """Multi-head self-attention over the map's positions (timm FastViT ``Attention``): qkv
    linear without bias, heads of ``head_dim`` channels, scale 1/sqrt(head_dim), output
    projection with bias. (N, H, W, C) -> same."""

    head_dim: int = 32

    @nn.compact
    def __call__(self, x):
        n, h, w, c = x.shape
        heads = c // self.head_dim
        dense = functools.partial(nn.Dense, kernel_init=_TRUNC,
                                  dot_general=f32_accumulating_dot_general, **self.kw)
        qkv = dense(3 * c, use_bias=False, name="qkv")(x.reshape(n, h * w, c))
        q, k, v = jnp.split(qkv.reshape(n, h * w, 3, heads, self.head_dim), 3, axis=2)
        y = dot_product_attention(q[:, :, 0], k[:, :, 0], v[:, :, 0])
        return dense(c, name="proj")(y.reshape(n, h * w, c)).reshape(n, h, w, c)


class FastViTBlock(_Module):
    """A RepMixer block (``token_mixer='repmixer'``) or an attention block (``'attention'``),
    each followed by the ConvMlp branch with layer scale and stochastic depth."""

    token_mixer: str
    mlp_ratio: float
    dropout_rate: float = 0.0
    drop_path_rate: float = 0.0

    def _scale(self, name, y):
        gamma = self.param(name, nn.initializers.constant(_LAYER_SCALE_INIT), (y.shape[-1],),
                           self.param_dtype)
        return gamma.astype(y.dtype) * y

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = x.shape[-1]
        drop = DropPath(self.drop_path_rate)
        sub = self.sub
        if self.token_mixer == "repmixer":
            x = RepMixer(name="token_mixer", **sub)(x, train)
            ls_mlp = "layer_scale"
        elif self.token_mixer == "attention":
            y = Attention(name="token_mixer", **self.kw)(self.bn("norm")(x, train))
            x = x + drop(self._scale("layer_scale_1", y), train)
            ls_mlp = "layer_scale_2"
        else:
            raise ValueError(f"token mixer {self.token_mixer!r}: use 'repmixer' or 'attention'")
        y = ConvMlp(int(c * self.mlp_ratio), self.dropout_rate, name="mlp", **sub)(x, train)
        return x + drop(self._scale(ls_mlp, y), train)


class FastViT(_Module):
    """FastViT, train-time form (see the module docstring). Input (N, H, W, 3) in ImageNet
    normalization, H and W multiples of 32 (256 by default); output (N, num_classes) logits, or
    the pooled (N, 2 * embed_dims[-1]) features when ``num_classes == 0``. Feature levels: the
    four stages (strides 4, 8, 16, 32), as timm's ``feature_info``.

    ``pos_embs``: per stage, whether it starts with RepCPE (SA models: the attention stage).
    """

    depths: Sequence[int] = (2, 2, 4, 2)
    embed_dims: Sequence[int] = (48, 96, 192, 384)
    mlp_ratio: float = 3.0
    token_mixers: Sequence[str] = ("repmixer",) * 4
    pos_embs: Sequence[bool] = (False,) * 4
    num_classes: int = 1000
    drop_rate: float = 0.0
    dropout_rate: float = 0.0
    drop_path_rate: float = 0.0

    @nn.compact
    def __call__(self, x, train: bool = False):
        sub = self.sub
        x = self._stem(x, train, sub)
        rates = drop_path_schedule(self.drop_path_rate, self.depths)
        k = 0
        for i, (width, depth) in enumerate(zip(self.embed_dims, self.depths, strict=True)):
            if x.shape[-1] != width or i > 0:  # timm: downsamples (False, True, True, True)
                x = PatchEmbed(width, name=f"stage{i + 1}_downsample", **sub)(x, train)
            if self.pos_embs[i]:
                # RepCPE (Chu et al. 2021): x + depthwise 7x7 conv with bias (inference form: the
                # identity folded into the kernel's centre).
                y = Conv(width, 7, padding=3, groups=width, kernel_init=torch_default_conv_init,
                         name=f"stage{i + 1}_pos_emb", **self.kw)(x)
                x = y if self.inference_mode else x + y
            for j in range(depth):
                x = FastViTBlock(self.token_mixers[i], self.mlp_ratio, self.dropout_rate,
                                 float(rates[k]), name=f"stage{i + 1}_block{j + 1}", **sub)(x, train)
                k += 1
            sow_level(x)
        c = self.embed_dims[-1]
        x = MobileOneBlock(2 * c, 3, groups=c, use_se=True, name="final_conv", **sub)(x, train)
        x = global_avg_pool(x)
        if self.num_classes == 0:
            return x
        x = Dropout(self.drop_rate)(x, train)
        return nn.Dense(self.num_classes, kernel_init=_TRUNC, dot_general=f32_accumulating_dot_general,
                        name="head", **self.kw)(x)

    def _stem(self, x, train, sub):
        w = self.embed_dims[0]
        x = MobileOneBlock(w, 3, 2, name="stem_0", **sub)(x, train)
        x = MobileOneBlock(w, 3, 2, groups=w, name="stem_1", **sub)(x, train)
        return MobileOneBlock(w, 1, name="stem_2", **sub)(x, train)


def _register(name: str, size: FastViTSize):
    def builder(num_classes, dtype, param_dtype, *, depths=size.depths, embed_dims=size.embed_dims,
                mlp_ratio=size.mlp_ratio, token_mixers=size.token_mixers, drop_rate=0.0,
                dropout_rate=0.0, drop_path_rate=0.0, inference_mode=False, bn_axis_name=None):
        """``depths``/``embed_dims`` change the architecture (tiny test instances); stages with
        attention start with RepCPE, as timm's SA models. ``inference_mode=True`` builds the
        fused form (timm ``inference_mode``) that ``fastvit_reparam.reparameterize`` fills."""
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        mixers = tuple(token_mixers)
        return FastViT(tuple(depths), tuple(embed_dims), float(mlp_ratio), mixers,
                       tuple(m == "attention" for m in mixers), num_classes=num_classes,
                       drop_rate=drop_rate, dropout_rate=dropout_rate, drop_path_rate=drop_path_rate,
                       inference_mode=inference_mode, bn_axis_name=bn_axis_name, dtype=dtype,
                       param_dtype=param_dtype)

    builder.__name__ = builder.__qualname__ = name
    register(name, family="fastvit", default_resolution=256,
             description=f"FastViT-{name.split('_')[1].upper()} (timm {name}: depths {size.depths}, "
                         f"widths {size.embed_dims}, train-time form), 256 px.")(builder)


for _name, _size in FASTVIT_SIZES.items():
    _register(_name, _size)
