"""EfficientFormer (Li et al., "EfficientFormer: Vision Transformers at MobileNet Speed", NeurIPS
2022, arXiv:2206.01191) L1 / L3 / L7.

A 4-stage MetaFormer: a stem of two 3x3/2 conv-BN-ReLU (stride 4), then stages of Meta4D blocks
on NHWC maps (token mixer: 3x3 average pooling minus the identity; MLP of 1x1 conv-BN-GELU-1x1
conv-BN; both branches with layer scale and stochastic depth), each stage after the first opening
with a 3x3/2 conv-BN. The last ``num_vit`` blocks of the last stage are Meta3D blocks on the
flattened tokens: pre-LayerNorm multi-head attention (8 heads, key dim 32, value dim 128) with a
learned attention bias per head indexed by the absolute token offset (|dy| * 7 + |dx|) in the
7x7 grid, and a GELU MLP (ratio 4), again with layer scale. LayerNorm, token mean, then two
linear heads, ``head`` and ``head_dist`` (the distillation head the published weights were
trained with against a RegNetY-16GF teacher); their logits are averaged, as timm returns them in
evaluation and in non-distilled training. Training with a teacher reads the two heads apart by
their names (``head``: true labels, ``head_dist``: the teacher's), as for DeiT.

Widths, depths, layer details, initialization and parameter counts follow timm 1.0
``efficientformer_{l1,l3,l7}``: widths (48, 96, 224, 448) / (64, 128, 320, 512) /
(96, 192, 384, 768), depths (3, 2, 6, 4) / (4, 4, 12, 6) / (6, 6, 18, 8), num_vit 1 / 4 / 8;
BatchNorm eps 1e-5 (momentum 0.1 = Flax 0.9), LayerNorm eps 1e-5, exact (erf) GELU, layer scale
1e-5, average pooling without the padded pixels; linear layers N(0, 0.02) (timm's
``trunc_normal_`` bounds are absolute, +-2) with zero biases, convolutions at PyTorch's default
(U(+-1/sqrt(fan_in)) for kernel and bias), attention biases zero; stochastic depth linear over
all blocks. The attention bias is learned for a 7x7 grid, so the model takes 224 px inputs
(fixed, as timm's ``fixed_input_size``); ImageNet mean/std.

Parameters: ``stem_conv{1,2}``/``stem_norm{1,2}``, ``stages_{i}_down_{conv,norm}``,
``stages_{i}_{j}`` (``Meta4D`` or ``Meta3D``), ``norm``, ``head``, ``head_dist``;
``batch_stats`` for every BatchNorm.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.layers.conv import Conv
from jaxvision.layers.dense import f32_accumulating_dot_general
from jaxvision.layers.drop import DropPath
from jaxvision.layers.feature_levels import tokens_to_map
from jaxvision.layers.norm import LayerNorm, batch_norm_of
from jaxvision.layers.pooling import avg_pool
from jaxvision.layers.transformer import gelu_exact
from jaxvision.models.features import sow_level
from jaxvision.models.registry import register

__all__ = ["EFFICIENTFORMER_CONFIGS", "EfficientFormer", "Meta3D", "Meta4D", "MetaAttention",
           "attention_bias_index"]

# timm efficientformer.py: EfficientFormer_width / EfficientFormer_depth and num_vit per size;
# the first stage keeps the stem's resolution, the others halve it.
EFFICIENTFORMER_CONFIGS = {
    "l1": dict(widths=(48, 96, 224, 448), depths=(3, 2, 6, 4), num_vit=1),
    "l3": dict(widths=(64, 128, 320, 512), depths=(4, 4, 12, 6), num_vit=4),
    "l7": dict(widths=(96, 192, 384, 768), depths=(6, 6, 18, 8), num_vit=8),
}
DEFAULT_DOWNSAMPLES = (False, True, True, True)
ATTENTION_RESOLUTION = 7  # token grid of the attention bias (224 px / 32), timm's Attention default
LN_EPS = 1e-5  # torch.nn.LayerNorm default, which timm uses here
LAYER_SCALE_INIT = 1e-5  # timm layer_scale_init_value

_linear_init = nn.initializers.normal(0.02)
_torch_conv_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
_gelu = gelu_exact  # torch.nn.GELU is the erf form


def _torch_bias_init(fan_in: int):
    """PyTorch's default conv/linear bias init, U(+-1/sqrt(fan_in))."""
    bound = 1.0 / np.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def torch_conv(features: int, kernel_size: int, c_in: int, **kwargs) -> Conv:
    """``layers.Conv`` with a bias, both at PyTorch's default init (``nn.Conv2d``)."""
    return Conv(features, kernel_size, use_bias=True, kernel_init=_torch_conv_init,
                bias_init=_torch_bias_init(kernel_size * kernel_size * c_in), **kwargs)


def attention_bias_index(resolution: int) -> np.ndarray:
    """(N, N) int index into a per-head table of resolution**2 biases, N = resolution**2 tokens
    in row-major order: |dy| * resolution + |dx| (timm's ``attention_bias_idxs``)."""
    pos = np.stack(np.meshgrid(np.arange(resolution), np.arange(resolution), indexing="ij"))
    pos = pos.reshape(2, -1)
    rel = np.abs(pos[:, :, None] - pos[:, None, :])
    return rel[0] * resolution + rel[1]


def _layer_scale(module: nn.Module, name: str, x):
    gamma = module.param(name, nn.initializers.constant(LAYER_SCALE_INIT), (x.shape[-1],),
                         module.param_dtype)
    return x * gamma.astype(x.dtype)


class MetaAttention(nn.Module):
    """Multi-head attention with a learned bias per head and absolute token offset.

    x (N, T, C), T = resolution**2 tokens -> (N, T, C). ``qkv`` Dense (C, H * (2 * key_dim +
    value_dim)) with each head's query, key and value contiguous (timm's layout); ``proj`` Dense
    (H * value_dim, C); ``attention_biases`` (H, resolution**2). Logits and softmax in float32.
    """

    num_heads: int = 8
    key_dim: int = 32
    attn_ratio: float = 4.0
    resolution: int = ATTENTION_RESOLUTION
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        n, t, c = x.shape
        h, kd = self.num_heads, self.key_dim
        vd = int(self.attn_ratio * kd)
        dense = functools.partial(nn.Dense, kernel_init=_linear_init, dtype=self.dtype,
                                  param_dtype=self.param_dtype,
                                  dot_general=f32_accumulating_dot_general)
        qkv = dense(h * (2 * kd + vd), name="qkv")(x).reshape(n, t, h, 2 * kd + vd)
        q, k, v = qkv[..., :kd], qkv[..., kd : 2 * kd], qkv[..., 2 * kd :]
        logits = jnp.einsum("nqhd,nkhd->nhqk", q, k, preferred_element_type=jnp.float32)
        biases = self.param("attention_biases", nn.initializers.zeros,
                            (h, self.resolution**2), self.param_dtype)
        logits = logits * kd**-0.5 + jnp.take(biases, attention_bias_index(self.resolution),
                                              axis=1).astype(jnp.float32)
        weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        y = jnp.einsum("nhqk,nkhd->nqhd", weights, v).reshape(n, t, h * vd)
        return dense(c, name="proj")(y)


class Meta4D(nn.Module):
    """Pooling MetaFormer block on maps: x (N, H, W, C) -> same.
    x + DropPath(ls1 * (avgpool3x3(x) - x)); x + DropPath(ls2 * (BN(fc2(GELU(BN(fc1(x))))))."""

    mlp_ratio: float = 4.0
    pool_size: int = 3
    dropout_rate: float = 0.0
    drop_path_rate: float = 0.0
    norm: Any = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        c = x.shape[-1]
        hidden = int(c * self.mlp_ratio)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        pooled = avg_pool(x, self.pool_size, 1, padding=self.pool_size // 2,
                          count_include_pad=False)
        x = x + DropPath(self.drop_path_rate)(_layer_scale(self, "layer_scale1", pooled - x), train)
        y = torch_conv(hidden, 1, c, name="fc1", **kw)(x)
        y = _gelu(self.norm(name="norm1", **kw)(y, train))
        y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
        y = self.norm(name="norm2", **kw)(torch_conv(c, 1, hidden, name="fc2", **kw)(y), train)
        y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
        return x + DropPath(self.drop_path_rate)(_layer_scale(self, "layer_scale2", y), train)


class Meta3D(nn.Module):
    """Attention MetaFormer block on tokens: x (N, T, C) -> same.
    x + DropPath(ls1 * attn(LN(x))); x + DropPath(ls2 * fc2(GELU(fc1(LN(x)))))."""

    mlp_ratio: float = 4.0
    dropout_rate: float = 0.0
    drop_path_rate: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        dense = functools.partial(nn.Dense, kernel_init=_linear_init,
                                  dot_general=f32_accumulating_dot_general, **kw)
        norm = functools.partial(LayerNorm, epsilon=LN_EPS, **kw)
        y = MetaAttention(name="attn", **kw)(norm(name="norm1")(x))
        x = x + DropPath(self.drop_path_rate)(_layer_scale(self, "layer_scale1", y), train)
        y = _gelu(dense(int(x.shape[-1] * self.mlp_ratio), name="fc1")(norm(name="norm2")(x)))
        y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
        y = nn.Dropout(self.dropout_rate)(dense(x.shape[-1], name="fc2")(y), deterministic=not train)
        return x + DropPath(self.drop_path_rate)(_layer_scale(self, "layer_scale2", y), train)


class EfficientFormer(nn.Module):
    """EfficientFormer classifier: (N, 224, 224, 3) -> logits (N, num_classes), the mean of the
    class and distillation heads (pooled features (N, C) when ``num_classes=0``) in ``dtype``.

    ``config``: ``widths``, ``depths`` (per stage), ``num_vit`` (Meta3D blocks ending the last
    stage, >= 1) and optionally ``downsamples`` (per stage; default: all but the first). The
    input side must give a 7x7 token grid in the last stage (224 px for the published sizes):
    ValueError otherwise.
    """

    num_classes: int
    config: Any
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    dropout_rate: float = 0.0
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def _stem(self, x, train, kw):
        norm = batch_norm_of(self)
        c = self.config["widths"][0]
        for k, width in ((1, c // 2), (2, c)):
            x = torch_conv(width, 3, x.shape[-1], strides=2, padding=1, name=f"stem_conv{k}", **kw)(x)
            x = nn.relu(norm(name=f"stem_norm{k}", **kw)(x, train))
        return x

    def _flatten(self, x):
        n, h, w, c = x.shape
        r = ATTENTION_RESOLUTION
        if (h, w) != (r, r):
            raise ValueError(
                f"EfficientFormer's attention bias is learned for a {r}x{r} token grid; this input "
                f"gives {h}x{w} in the last stage: feed {r * self._stride()}x{r * self._stride()} px images")
        return x.reshape(n, h * w, c)

    def _stride(self) -> int:
        return 4 * 2 ** sum(bool(d) for d in self._downsamples())

    def _downsamples(self):
        return tuple(self.config.get("downsamples") or DEFAULT_DOWNSAMPLES)

    @nn.compact
    def __call__(self, x, train: bool = False):
        if x.ndim != 4:
            raise ValueError(f"expected NHWC images (N, H, W, C), got shape {x.shape}")
        cfg = dict(self.config)
        if cfg["num_vit"] < 1:
            raise ValueError("EfficientFormer needs num_vit >= 1 attention blocks in its last stage")
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = self._stem(jnp.asarray(x, self.dtype), train, kw)
        depths, last = cfg["depths"], len(cfg["depths"]) - 1
        n_blocks = sum(depths)
        rates = iter([self.drop_path_rate * i / max(n_blocks - 1, 1) for i in range(n_blocks)])
        for i, (width, depth, down) in enumerate(zip(cfg["widths"], depths, self._downsamples(),
                                                     strict=True)):
            if down:
                x = torch_conv(width, 3, x.shape[-1], strides=2, padding=1,
                               name=f"stages_{i}_down_conv", **kw)(x)
                x = batch_norm_of(self)(name=f"stages_{i}_down_norm", **kw)(x, train)
            first_vit = depth - cfg["num_vit"] if i == last else depth
            for j in range(depth):
                if j == first_vit:
                    grid = x.shape[1:3]
                    x = self._flatten(x)
                if j >= first_vit:
                    x = Meta3D(dropout_rate=self.dropout_rate, drop_path_rate=next(rates),
                               name=f"stages_{i}_{j}", **kw)(x, train)
                else:
                    x = Meta4D(dropout_rate=self.dropout_rate, drop_path_rate=next(rates),
                               norm=batch_norm_of(self), name=f"stages_{i}_{j}", **kw)(x, train)
            # feature levels: every stage's output (the last one's tokens as a map, before the
            # final norm, as timm's features); strides 4, 8, 16, 32
            sow_level(x if x.ndim == 4 else tokens_to_map(x, grid))
        x = LayerNorm(epsilon=LN_EPS, name="norm", **kw)(x)
        x = jnp.mean(x, axis=1, dtype=jnp.float32).astype(self.dtype)
        if self.num_classes == 0:
            return x
        x = nn.Dropout(self.drop_rate)(x, deterministic=not train)
        head = functools.partial(nn.Dense, self.num_classes, kernel_init=_linear_init, **kw)
        return (head(name="head")(x) + head(name="head_dist")(x)) / 2


def _register(size: str):
    name = f"efficientformer_{size}"

    def builder(num_classes, dtype, param_dtype, *, drop_rate: float = 0.0,
                drop_path_rate: float = 0.0, dropout_rate: float = 0.0, bn_momentum: float = 0.9,
                bn_epsilon: float = 1e-5, bn_axis_name: str | None = None,
                config: dict | None = None):
        """``config``: an ``EFFICIENTFORMER_CONFIGS``-shaped dict replacing the size's (e.g. tiny
        instances for tests; ``downsamples`` optional)."""
        return EfficientFormer(
            num_classes=num_classes, config=config or EFFICIENTFORMER_CONFIGS[size],
            drop_rate=drop_rate, drop_path_rate=drop_path_rate, dropout_rate=dropout_rate,
            bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, bn_axis_name=bn_axis_name,
            dtype=dtype, param_dtype=param_dtype)

    builder.__name__ = name
    builder.__doc__ = (f"EfficientFormer-{size.upper()} (Li et al. 2022), distillation head "
                       "averaged, 224 px (fixed).")
    register(name, family="efficientformer", default_resolution=224)(builder)


for _size in EFFICIENTFORMER_CONFIGS:
    _register(_size)
