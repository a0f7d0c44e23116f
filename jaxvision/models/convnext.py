"""ConvNeXt (Liu et al., CVPR 2022), as torchvision's ``convnext_{tiny,small,base,large}``.

Patchify stem (4x4/4 conv with bias -> LayerNorm); four stages of ConvNeXt blocks, a
downsampling layer (LayerNorm -> 2x2/2 conv) before stages 2-4. Block: 7x7 depthwise conv (bias)
-> LayerNorm -> Linear(4C) -> GELU (exact) -> Linear(C) -> per-channel layer scale (init 1e-6)
-> stochastic depth -> + input. Head: global average pool -> LayerNorm -> Linear. LayerNorm eps
1e-6; convs and linears trunc-normal(0.02) with zero biases (torchvision and the paper's code).
Parameter counts at 1000 classes equal torchvision 0.29's: tiny 28,589,128, small 50,223,688,
base 88,591,464, large 197,767,336.

Parameters: ``stem_conv``, ``stem_norm``, ``stage{i}_downsample_{norm,conv}`` (i >= 2),
``stage{i}_block{j}/{dwconv,norm,fc1,fc2,layer_scale}``, ``head_norm``, ``head``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxvision.layers import Conv, DropPath, global_avg_pool, remat_block
from jaxvision.layers.dense import f32_accumulating_dot_general
from jaxvision.layers.norm import LayerNorm
from jaxvision.layers.transformer import gelu_exact
from jaxvision.models.features import sow_level
from jaxvision.models.registry import register

__all__ = ["CONVNEXT_SIZES", "ConvNeXt", "ConvNeXtBlock"]

# size: (stage widths, blocks per stage, default stochastic depth) -- paper Table 9 / torchvision
# (whose builders default to the paper's ImageNet-1k drop-path rates 0.1, 0.4, 0.5, 0.5).
CONVNEXT_SIZES = {
    "tiny": ((96, 192, 384, 768), (3, 3, 9, 3), 0.1),
    "small": ((96, 192, 384, 768), (3, 3, 27, 3), 0.4),
    "base": ((128, 256, 512, 1024), (3, 3, 27, 3), 0.5),
    "large": ((192, 384, 768, 1536), (3, 3, 27, 3), 0.5),
}
_INIT = nn.initializers.truncated_normal(0.02)  # timm/torchvision trunc_normal_(std=0.02)
_LN_EPS = 1e-6


class ConvNeXtBlock(nn.Module):
    """x (N, H, W, C) -> (N, H, W, C): x + DropPath(gamma * MLP(LN(dwconv7x7(x))))."""

    drop_path_rate: float = 0.0
    layer_scale_init: float = 1e-6
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = x.shape[-1]
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        dense = dict(kernel_init=_INIT, dot_general=f32_accumulating_dot_general, **kw)
        y = Conv(c, 7, padding=3, groups=c, use_bias=True, kernel_init=_INIT, name="dwconv", **kw)(x)
        y = LayerNorm(epsilon=_LN_EPS, name="norm", **kw)(y)
        y = gelu_exact(nn.Dense(4 * c, name="fc1", **dense)(y))
        y = nn.Dense(c, name="fc2", **dense)(y)
        gamma = self.param("layer_scale", nn.initializers.constant(self.layer_scale_init), (c,),
                           self.param_dtype)
        return x + DropPath(self.drop_path_rate)(y * gamma.astype(y.dtype), train)


class ConvNeXt(nn.Module):
    """ConvNeXt classifier: (N, H, W, 3) -> logits (N, num_classes), or the normalized pooled
    features (N, dims[-1]) when ``num_classes == 0``. H, W multiples of 32 (224 by default).

    Attributes:
      dims, depths: stage widths and blocks per stage (``CONVNEXT_SIZES``).
      drop_path_rate: stochastic depth of the last block, linear from 0 over all blocks
        (torchvision, the paper's code).
      layer_scale_init: initial per-channel scale of every block's branch (1e-6).
      drop_rate: dropout before the head (0 in the paper).
      remat: the blocks' rematerialization policy ('none' | 'full' | 'dots_saveable').
    Feature levels (``features_only``): every stage's output, strides 4, 8, 16, 32.
    """

    dims: Sequence[int]
    depths: Sequence[int]
    num_classes: int = 1000
    drop_path_rate: float = 0.0
    layer_scale_init: float = 1e-6
    drop_rate: float = 0.0
    remat: str = "none"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        if len(self.dims) != len(self.depths):
            raise ValueError(f"dims {self.dims} and depths {self.depths} differ in length")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = jnp.asarray(x, self.dtype)
        x = Conv(self.dims[0], 4, 4, padding="VALID", use_bias=True, kernel_init=_INIT,
                 name="stem_conv", **kw)(x)
        x = LayerNorm(epsilon=_LN_EPS, name="stem_norm", **kw)(x)
        total, k = sum(self.depths), 0
        block = remat_block(ConvNeXtBlock, self.remat, static_argnums=(2,))  # train stays static
        for i, (dim, depth) in enumerate(zip(self.dims, self.depths, strict=True)):
            if i > 0:
                x = LayerNorm(epsilon=_LN_EPS, name=f"stage{i + 1}_downsample_norm", **kw)(x)
                x = Conv(dim, 2, 2, padding="VALID", use_bias=True, kernel_init=_INIT,
                         name=f"stage{i + 1}_downsample_conv", **kw)(x)
            for j in range(depth):
                rate = self.drop_path_rate * k / max(total - 1, 1)
                x = block(rate, self.layer_scale_init, name=f"stage{i + 1}_block{j + 1}",
                                  **kw)(x, train)
                k += 1
            sow_level(x)
        x = LayerNorm(epsilon=_LN_EPS, name="head_norm", **kw)(global_avg_pool(x))
        if self.num_classes == 0:
            return x
        x = nn.Dropout(self.drop_rate)(x, deterministic=not train)
        return nn.Dense(self.num_classes, kernel_init=_INIT,
                        dot_general=f32_accumulating_dot_general, name="head", **kw)(x)


def _register(size: str):
    dims, depths, default_rate = CONVNEXT_SIZES[size]
    name = f"convnext_{size}"

    def builder(num_classes, dtype, param_dtype, *, drop_path_rate=default_rate, drop_rate=0.0,
                layer_scale_init=1e-6, dims=dims, depths=depths, bn_axis_name=None,
                remat="none"):
        """``dims``/``depths`` change the architecture (e.g. tiny test instances);
        ``bn_axis_name`` is accepted and ignored (no BatchNorm)."""
        del bn_axis_name
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        return ConvNeXt(tuple(dims), tuple(depths), num_classes=num_classes,
                        drop_path_rate=drop_path_rate, layer_scale_init=layer_scale_init,
                        drop_rate=drop_rate, remat=remat, dtype=dtype, param_dtype=param_dtype)

    builder.__name__ = builder.__qualname__ = name
    register(name, family="convnext", default_resolution=224,
             description=f"ConvNeXt-{size.capitalize()} (torchvision convnext_{size}), "
             f"drop path {default_rate}.")(builder)


for _size in CONVNEXT_SIZES:
    _register(_size)
