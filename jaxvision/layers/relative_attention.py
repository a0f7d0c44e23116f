"""Self-attention with a learned relative position bias over a 2-D window of tokens (Swin, MaxViT,
CoAtNet).

The bias is a table of ``(2h - 1) * (2w - 1)`` entries per head, one per relative offset
(dy, dx) inside an (h, w) window, gathered into an (H, N, N) matrix with N = h * w (Liu et al.
2021, eq. 4; the index is the one of torchvision's ``swin_transformer.py`` and timm's
``gen_relative_position_index``).

Parameter layout (the same for every family, so converters only reorder rows): ``qkv`` Dense
(C, 3 * H * Dh) with the query, key and value blocks one after the other and heads contiguous in
each (torchvision's layout), ``proj`` Dense (H * Dh, C), ``relative_position_bias_table``
((2h - 1)(2w - 1), H).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.layers.dense import f32_accumulating_dot_general

__all__ = [
    "RelativePositionSelfAttention",
    "grid_merge",
    "grid_partition",
    "relative_position_index",
    "window_merge",
    "window_partition",
]

# The bias table and the projections: torchvision Swin / MaxViT and timm ``trunc_normal_(std=.02)``,
# whose bounds a=-2, b=2 are absolute (100 standard deviations), i.e. N(0, 0.02) in effect.
std02_init = nn.initializers.normal(0.02)


def relative_position_index(height: int, width: int) -> np.ndarray:
    """(N, N) int32 indices into the bias table for an (height, width) window, N = height * width:
    entry (i, j) is ``(dy + height - 1) * (2 * width - 1) + dx + width - 1`` with (dy, dx) the
    offset of token i from token j (row-major token order)."""
    coords = np.stack(np.meshgrid(np.arange(height), np.arange(width), indexing="ij")).reshape(2, -1)
    rel = coords[:, :, None] - coords[:, None, :]  # (2, N, N)
    return ((rel[0] + height - 1) * (2 * width - 1) + rel[1] + width - 1).astype(np.int32)


def window_partition(x, window: tuple[int, int]):
    """(B, H, W, C) -> (B, H/wh * W/ww, wh * ww, C): non-overlapping wh x ww windows (row-major),
    tokens of each window row-major (Swin, MaxViT block attention)."""
    b, h, w, c = x.shape
    wh, ww = window
    x = x.reshape(b, h // wh, wh, w // ww, ww, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // wh) * (w // ww), wh * ww, c)


def window_merge(x, window: tuple[int, int], height: int, width: int):
    """Inverse of ``window_partition``: (B, nW, wh * ww, C) -> (B, height, width, C)."""
    b, _, _, c = x.shape
    wh, ww = window
    x = x.reshape(b, height // wh, width // ww, wh, ww, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, height, width, c)


def grid_partition(x, grid: tuple[int, int]):
    """(B, H, W, C) -> (B, H/gh * W/gw, gh * gw, C): MaxViT's grid attention groups, each a
    gh x gw grid of tokens spaced (H/gh, W/gw) apart covering the whole map (token (a, c) of
    group (b, d) is pixel (a * H/gh + b, c * W/gw + d)); as timm's ``grid_partition`` and
    torchvision's grid ``PartitionAttentionLayer``."""
    b, h, w, c = x.shape
    gh, gw = grid
    x = x.reshape(b, gh, h // gh, gw, w // gw, c).transpose(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // gh) * (w // gw), gh * gw, c)


def grid_merge(x, grid: tuple[int, int], height: int, width: int):
    """Inverse of ``grid_partition``: (B, nG, gh * gw, C) -> (B, height, width, C)."""
    b, _, _, c = x.shape
    gh, gw = grid
    x = x.reshape(b, height // gh, width // gw, gh, gw, c).transpose(0, 3, 1, 4, 2, 5)
    return x.reshape(b, height, width, c)


class RelativePositionSelfAttention(nn.Module):
    """Multi-head self-attention inside windows of ``window_size`` tokens, with relative position
    bias.

    Input x (..., N, C) with N = h * w tokens of one window in row-major order (any leading axes:
    batch, window index...). ``mask``: optional additive float logits bias broadcastable to
    (..., H, N, N) (Swin's shifted-window mask). Output (..., N, out_features or C) in ``dtype``.
    Logits and softmax are computed in float32.

    Attributes:
      num_heads: H; ``head_dim`` (Dh) defaults to C // H.
      out_features: width of the output projection (default C; CoAtNet's downsampling blocks
        attend with the stage's wider H * Dh and project to it).
      window_size: (h, w) of the window the tokens come from.
      qkv_bias / proj_bias: biases of the projections.
      scale: logits scale; None gives 1 / sqrt(head_dim) (torchvision's MaxViT uses
        1 / sqrt(C)).
      kernel_init: of ``qkv`` and ``proj`` (N(0, 0.02) by default, as the references).
    """

    num_heads: int
    window_size: tuple[int, int]
    head_dim: int | None = None
    out_features: int | None = None
    qkv_bias: bool = True
    proj_bias: bool = True
    scale: float | None = None
    kernel_init: Any = std02_init
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def _dense(self, features, use_bias, name):
        return nn.Dense(features, use_bias=use_bias, kernel_init=self.kernel_init,
                        dtype=self.dtype, param_dtype=self.param_dtype,
                        dot_general=f32_accumulating_dot_general, name=name)

    def relative_position_bias(self) -> jnp.ndarray:
        """(H, N, N) float32 bias from the table."""
        h, w = self.window_size
        table = self.param("relative_position_bias_table", std02_init,
                           ((2 * h - 1) * (2 * w - 1), self.num_heads), self.param_dtype)
        bias = jnp.take(table, relative_position_index(h, w).reshape(-1), axis=0)
        return bias.reshape(h * w, h * w, self.num_heads).transpose(2, 0, 1).astype(jnp.float32)

    @nn.compact
    def __call__(self, x, mask=None):
        c = x.shape[-1]
        h, w = self.window_size
        if x.shape[-2] != h * w:
            raise ValueError(f"expected {h}x{w}={h * w} tokens per window, got shape {x.shape}")
        head_dim = self.head_dim or c // self.num_heads
        inner = self.num_heads * head_dim
        qkv = self._dense(3 * inner, self.qkv_bias, "qkv")(x)
        qkv = qkv.reshape(*x.shape[:-1], 3, self.num_heads, head_dim)
        q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]  # (..., N, H, Dh)
        q = q * jnp.asarray(head_dim**-0.5 if self.scale is None else self.scale, q.dtype)
        logits = jnp.einsum("...qhd,...khd->...hqk", q, k, preferred_element_type=jnp.float32)
        logits = logits + self.relative_position_bias()
        if mask is not None:
            logits = logits + mask
        weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
        y = jnp.einsum("...hqk,...khd->...qhd", weights, v).reshape(*x.shape[:-1], inner)
        return self._dense(self.out_features or c, self.proj_bias, "proj")(y)
