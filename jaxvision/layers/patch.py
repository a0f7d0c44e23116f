"""Image -> tokens for Vision Transformers (Flax Linen, NHWC).

* ``PatchEmbed``: a conv with kernel = stride = patch size, then (N, h, w, D) -> (N, h*w, D).
* ``ClassToken``: prepends a learned class token; ``pool_tokens`` reads it (``'token'``) or
  averages the patch tokens (``'gap'``).
* ``PositionEmbedding``: learned (ViT) or fixed 2-D sin-cos (MoCo v3 / big_vision) position
  embeddings. Learned embeddings are stored for one grid (the resolution the parameters were made
  for) and interpolated at apply time when the input grid differs; ``resize_position_embedding``
  and ``resize_pos_embedding_params`` resize stored parameters once instead (e.g. to fine-tune
  at 384 px from a 224 px checkpoint, as the ViT paper does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import einops
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.layers.conv import Conv

__all__ = [
    "ClassToken",
    "PatchEmbed",
    "PositionEmbedding",
    "pool_tokens",
    "resize_pos_embedding_params",
    "resize_position_embedding",
    "sincos_2d_position_embedding",
]

POS_EMBED_MODULE = "pos_embed"
POS_EMBED_PARAM = "embedding"


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int | np.integer) else (int(v[0]), int(v[1]))


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens.

    Input (N, H, W, C) with H and W multiples of the patch size; returns tokens
    (N, (H/p)*(W/p), D) in ``dtype`` (row-major over the patch grid) and the grid (H/p, W/p).
    The conv is named ``proj``; its kernel is (p, p, C, D).
    """

    patch_size: int | Sequence[int]
    hidden_size: int
    use_bias: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x):
        if x.ndim != 4:
            raise ValueError(f"PatchEmbed expects NHWC images (N, H, W, C), got shape {x.shape}")
        ph, pw = _pair(self.patch_size)
        if x.shape[1] % ph or x.shape[2] % pw:
            raise ValueError(
                f"input of {x.shape[1]}x{x.shape[2]} is not divisible into {ph}x{pw} patches; "
                f"resize or crop the input to a multiple of {ph}x{pw}"
            )
        x = Conv(
            self.hidden_size,
            (ph, pw),
            strides=(ph, pw),
            padding="VALID",
            use_bias=self.use_bias,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=self.kernel_init,
            name="proj",
        )(x)
        grid = (x.shape[1], x.shape[2])
        return einops.rearrange(x, "n h w d -> n (h w) d"), grid


class ClassToken(nn.Module):
    """Prepends a learned token ``cls`` (1, 1, D), zero-initialized: (N, T, D) -> (N, 1+T, D)."""

    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        cls = self.param("cls", nn.initializers.zeros, (1, 1, x.shape[-1]), self.param_dtype)
        cls = jnp.broadcast_to(cls.astype(x.dtype), (x.shape[0], 1, x.shape[-1]))
        return jnp.concatenate([cls, x], axis=1)


def pool_tokens(x, pool: str, num_prefix_tokens: int = 1):
    """(N, T, D) -> (N, D): the class token (``'token'``) or the mean of the other tokens
    (``'gap'``, accumulated in float32)."""
    if pool == "token":
        if num_prefix_tokens < 1:
            raise ValueError("pool='token' needs a class token (num_prefix_tokens >= 1)")
        return x[:, 0]
    if pool == "gap":
        return jnp.mean(x[:, num_prefix_tokens:], axis=1, dtype=jnp.float32).astype(x.dtype)
    raise ValueError(f"unknown pool {pool!r}; use 'token' or 'gap'")


def sincos_2d_position_embedding(grid, dim: int, temperature: float = 10_000.0) -> np.ndarray:
    """Fixed 2-D sin-cos embedding (h*w, dim), float32, row-major over the grid.

    The first half of the channels encodes the column (x), the second the row (y), each as
    [sin | cos] over dim/4 frequencies temperature^(-k/(dim/4)) (MoCo v3, big_vision).
    """
    h, w = _pair(grid)
    if dim % 4:
        raise ValueError(f"sin-cos 2-D position embedding needs a width divisible by 4, got {dim}")
    y, x = np.mgrid[:h, :w]
    omega = 1.0 / temperature ** (np.arange(dim // 4) / (dim // 4))
    y = np.einsum("m,d->md", y.reshape(-1), omega)
    x = np.einsum("m,d->md", x.reshape(-1), omega)
    return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1).astype(np.float32)


def _infer_grid(num_tokens: int) -> tuple[int, int]:
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(
            f"cannot infer a square grid from {num_tokens} position embeddings; pass old_grid"
        )
    return side, side


def resize_position_embedding(
    posemb,
    new_grid,
    *,
    num_prefix_tokens: int = 1,
    old_grid=None,
    method: str = "bicubic",
    antialias: bool = True,
):
    """Interpolates the grid part of a position embedding to a new grid.

    Args:
      posemb: (1, P + h*w, D) or (P + h*w, D); the first ``num_prefix_tokens`` rows (class token)
        are kept as they are.
      new_grid: (h', w') or an int.
      old_grid: (h, w); inferred as square when omitted.
      method: ``jax.image.resize`` method, half-pixel centres. ``'bicubic'`` is Keys' cubic with
        a = -0.5 and renormalized edge weights, close to but not bit-equal with timm's PyTorch
        bicubic (a = -0.75); ``'bilinear'`` equals ``tf.image.resize``/PyTorch (align_corners
        False) when upsampling; the ViT paper's code uses bilinear zoom.

    Returns:
      (1, P + h'*w', D) (or without the leading 1, as given), in the input's dtype.
    """
    squeeze = posemb.ndim == 2
    if squeeze:
        posemb = posemb[None]
    prefix, grid_emb = posemb[:, :num_prefix_tokens], posemb[:, num_prefix_tokens:]
    old_h, old_w = _pair(old_grid) if old_grid is not None else _infer_grid(grid_emb.shape[1])
    if old_h * old_w != grid_emb.shape[1]:
        raise ValueError(
            f"position embedding has {grid_emb.shape[1]} grid tokens, not {old_h}x{old_w}"
        )
    new_h, new_w = _pair(new_grid)
    if (new_h, new_w) != (old_h, old_w):
        grid_emb = einops.rearrange(grid_emb, "b (h w) d -> b h w d", h=old_h, w=old_w)
        grid_emb = jax.image.resize(
            grid_emb.astype(jnp.float32),
            (grid_emb.shape[0], new_h, new_w, grid_emb.shape[-1]),
            method=method,
            antialias=antialias,
        ).astype(posemb.dtype)
        grid_emb = einops.rearrange(grid_emb, "b h w d -> b (h w) d")
    out = jnp.concatenate([prefix, grid_emb], axis=1)
    return out[0] if squeeze else out


def resize_pos_embedding_params(params, new_grid, *, num_prefix_tokens=None, method="bicubic"):
    """Returns ``params`` (a nested dict) with every learned ``pos_embed/embedding`` resized to
    ``new_grid``; the prefix-token count is inferred from square grids when not given."""

    def resize(leaf):
        n = leaf.shape[-2]
        prefix = num_prefix_tokens
        if prefix is None:
            prefix = 0 if math.isqrt(n) ** 2 == n else 1
        return resize_position_embedding(leaf, new_grid, num_prefix_tokens=prefix, method=method)

    def walk(tree):
        out = {}
        for k, v in tree.items():
            if (
                k == POS_EMBED_MODULE
                and isinstance(v, dict | nn.FrozenDict)
                and POS_EMBED_PARAM in v
            ):
                out[k] = {**v, POS_EMBED_PARAM: resize(v[POS_EMBED_PARAM])}
            elif isinstance(v, dict | nn.FrozenDict):
                out[k] = walk(v)
            else:
                out[k] = v
        return out

    return walk(params)


class PositionEmbedding(nn.Module):
    """Adds position embeddings to tokens (N, P + h*w, D) laid out as [prefix tokens, grid].

    Attributes:
      kind: ``'learned'`` (parameter ``embedding`` (1, P + h0*w0, D), N(0, 0.02), covering the
        prefix tokens too, as in the ViT paper) or ``'sincos2d'`` (fixed, no parameters; zero on
        prefix tokens).
      grid_size: (h0, w0) the learned parameter is made for; ``None`` takes the grid of the input
        at initialization. Other grids at apply time get a bicubic interpolation of it.
      num_prefix_tokens: tokens before the grid (1 with a class token, else 0).
    """

    kind: str = "learned"
    grid_size: tuple[int, int] | None = None
    num_prefix_tokens: int = 1
    interpolation: str = "bicubic"
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, grid):
        grid = _pair(grid)
        p = self.num_prefix_tokens
        if x.shape[1] != p + grid[0] * grid[1]:
            raise ValueError(
                f"{x.shape[1]} tokens do not match {p} prefix tokens + a {grid[0]}x{grid[1]} grid"
            )
        if self.kind == "learned":
            stored = _pair(self.grid_size) if self.grid_size is not None else grid
            emb = self.param(
                POS_EMBED_PARAM,
                nn.initializers.normal(stddev=0.02),
                (1, p + stored[0] * stored[1], x.shape[-1]),
                self.param_dtype,
            )
            emb = resize_position_embedding(
                emb, grid, num_prefix_tokens=p, old_grid=stored, method=self.interpolation
            )
        elif self.kind == "sincos2d":
            emb = sincos_2d_position_embedding(grid, x.shape[-1])
            emb = np.concatenate([np.zeros((p, x.shape[-1]), np.float32), emb])[None]
        else:
            raise ValueError(
                f"unknown position embedding {self.kind!r}; use 'learned' or 'sincos2d'"
            )
        return x + jnp.asarray(emb).astype(x.dtype)
