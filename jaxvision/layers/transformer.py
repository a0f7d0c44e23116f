"""Transformer encoder layers (Flax Linen) on token sequences (N, T, D).

``MlpBlock`` (Dense -> GELU -> Dropout -> Dense -> Dropout), ``EncoderBlock`` (pre-norm:
x + DropPath(Dropout(MHSA(LN(x)))), then x + DropPath(MLP(LN(x)))) and ``Encoder`` (a stack of
blocks + final LayerNorm) with optional ``nn.scan`` over the identical layers (one compiled body
instead of L copies: fast compiles for deep models) and ``nn.remat`` (recompute activations in the
backward pass: less memory). Scanned and unrolled encoders compute the same function; their
parameter trees map onto each other with ``stack_encoder_params`` / ``unstack_encoder_params``.

Initialization follows the ViT paper's code: Xavier-uniform kernels, MLP biases N(0, 1e-6),
LayerNorm epsilon 1e-6.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.layers import onednn_gelu as _onednn_gelu
from jaxvision.layers.attention import MultiHeadSelfAttention
from jaxvision.layers.dense import Dense
from jaxvision.layers.feature_levels import collecting, sow_level, tokens_to_map
from jaxvision.layers.lowering import conv_impl
from jaxvision.layers.norm import LayerNorm
from jaxvision.layers.remat import remat_block

__all__ = [
    "Encoder",
    "EncoderBlock",
    "MlpBlock",
    "drop_path_rates",
    "gelu",
    "gelu_exact",
    "stack_encoder_params",
    "unstack_encoder_params",
]

# Parameter names of the stacked (scanned) and unrolled encoder layers.
SCANNED_NAME = "blocks"
LAYER_PREFIX = "block_"


def gelu(x, approximate: bool = False):
    """GELU, x Phi(x): ``approximate=False`` the exact erf form (timm, DeiT, PyTorch
    ``nn.GELU()``), True the tanh approximation (``jax.nn.gelu``'s default, the ViT paper's JAX
    code). On the CPU through oneDNN's kernel where it applies (``jaxvision.layers.onednn_gelu``;
    same function, forward and backward), else ``jax.nn.gelu``. Shape and dtype: x's."""
    x = jnp.asarray(x)
    if conv_impl() == "onednn" and _onednn_gelu.onednn_gelu_applies(x):
        return _onednn_gelu.onednn_gelu(x, approximate)
    return nn.gelu(x, approximate=approximate)


def gelu_exact(x):
    """GELU with the exact erf form (timm, DeiT, PyTorch ``nn.GELU()``): ``gelu(x, False)``."""
    return gelu(x, approximate=False)


def drop_path_rates(drop_path_rate: float, num_layers: int, schedule: str = "linear") -> np.ndarray:
    """Stochastic-depth rate of each layer: ``'linear'`` from 0 to ``drop_path_rate`` (DeiT,
    timm ViT) or ``'constant'`` (every layer the same, as in timm's MobileViT blocks)."""
    if schedule == "linear":
        return np.linspace(0.0, drop_path_rate, num_layers, dtype=np.float32)
    if schedule == "constant":
        return np.full((num_layers,), drop_path_rate, np.float32)
    raise ValueError(f"unknown drop path schedule {schedule!r}; use 'linear' or 'constant'")


def _drop_path(module: nn.Module, x, rate):
    """Drops whole residual branches per example, scaling survivors by 1/keep.

    ``rate`` may be a traced scalar (it is one per scanned layer), which is why this is not the
    float-configured DropPath layer.
    """
    keep = 1.0 - rate
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = jax.random.bernoulli(module.make_rng("drop_path"), keep, shape)
    return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros((), x.dtype))


class MlpBlock(nn.Module):
    """Transformer MLP: (N, T, D) -> Dense(mlp_dim) ``fc1`` -> act -> Dropout -> Dense(out_dim
    or D) ``fc2`` -> Dropout.

    ``act`` defaults to the exact (erf) GELU of timm/DeiT/PyTorch; the ViT paper's JAX code uses
    the tanh approximation (``nn.gelu``); MobileViT uses SiLU (``nn.silu``).
    """

    mlp_dim: int
    out_dim: int | None = None
    dropout_rate: float = 0.0
    act: Callable = gelu_exact
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.xavier_uniform()
    bias_init: Any = nn.initializers.normal(stddev=1e-6)

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        dense = dict(
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
        )
        out_dim = self.out_dim or x.shape[-1]
        x = Dense(self.mlp_dim, name="fc1", **dense)(x)
        x = self.act(x)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
        x = Dense(out_dim, name="fc2", **dense)(x)
        return nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)


class EncoderBlock(nn.Module):
    """Pre-norm Transformer encoder block: (N, T, D) -> (N, T, D).

    Attributes:
      num_heads, mlp_dim: attention heads and MLP hidden width.
      dropout_rate: dropout after attention and in the MLP ('dropout' RNG stream).
      attn_drop_rate: dropout on attention weights.
      stochastic_depth: whether the block applies drop path at all (the per-layer rate is a call
        argument so that scanned layers can each have their own).
    """

    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    attn_drop_rate: float = 0.0
    stochastic_depth: bool = False
    layer_norm_epsilon: float = 1e-6
    mlp_act: Callable = gelu_exact
    attention_impl: str = "auto"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, drop_path_rate=0.0, deterministic: bool = True):
        """``drop_path_rate``: Python float or scalar array (per layer under ``nn.scan``)."""
        use_drop_path = self.stochastic_depth and not deterministic

        def residual(x, y):
            return x + (_drop_path(self, y, drop_path_rate) if use_drop_path else y)

        norm = dict(epsilon=self.layer_norm_epsilon, dtype=self.dtype, param_dtype=self.param_dtype)
        y = LayerNorm(name="norm1", **norm)(x)
        y = MultiHeadSelfAttention(
            num_heads=self.num_heads,
            attn_drop_rate=self.attn_drop_rate,
            implementation=self.attention_impl,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="attn",
        )(y, deterministic=deterministic)
        y = nn.Dropout(self.dropout_rate)(y, deterministic=deterministic)
        x = residual(x, y)
        y = LayerNorm(name="norm2", **norm)(x)
        y = MlpBlock(
            mlp_dim=self.mlp_dim,
            dropout_rate=self.dropout_rate,
            act=self.mlp_act,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="mlp",
        )(y, deterministic=deterministic)
        return residual(x, y)


def _scan_step(block: EncoderBlock, x, drop_path_rate, deterministic):
    return block(x, drop_path_rate, deterministic), None


def _scan_step_keeping_outputs(block: EncoderBlock, x, drop_path_rate, deterministic):
    x = block(x, drop_path_rate, deterministic)
    return x, x


class Encoder(nn.Module):
    """Stack of ``num_layers`` encoder blocks followed by LayerNorm: (N, T, D) -> (N, T, D).

    Attributes:
      drop_path_rate: stochastic depth of the last layer; layer i gets i/(L-1) of it
        (``drop_path_schedule='linear'``) or every layer gets it (``'constant'``).
      scan_layers: ``nn.scan`` over the layers; parameters are stacked under ``blocks`` with a
        leading axis of length ``num_layers`` (otherwise ``block_0`` ... ``block_{L-1}``).
      remat: rematerialization policy of each block, 'none' | 'full' | 'dots_saveable'
        (``layers.remat``; True = 'full'): activations recomputed in the backward pass.
    """

    num_layers: int
    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    scan_layers: bool = False
    remat: bool | str = "none"
    drop_path_schedule: str = "linear"
    layer_norm_epsilon: float = 1e-6
    mlp_act: Callable = gelu_exact
    attention_impl: str = "auto"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, deterministic: bool = True, feature_grid=None, num_prefix_tokens: int = 0):
        """``feature_grid`` (gh, gw): the patch grid of the tokens after ``num_prefix_tokens``;
        given, every layer's output is a feature level (``models.features``, timm's convention
        for ViTs) while a feature extractor collects them."""
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        # deterministic (argument 3, counting the module) stays a Python bool.
        block_cls = remat_block(EncoderBlock, self.remat, static_argnums=(3,),
                                prevent_cse=not self.scan_layers)
        block_kw = dict(
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            dropout_rate=self.dropout_rate,
            attn_drop_rate=self.attn_drop_rate,
            stochastic_depth=self.drop_path_rate > 0.0,
            layer_norm_epsilon=self.layer_norm_epsilon,
            mlp_act=self.mlp_act,
            attention_impl=self.attention_impl,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        rates = drop_path_rates(self.drop_path_rate, self.num_layers, self.drop_path_schedule)
        keep = feature_grid is not None and collecting()

        def sow(y):
            sow_level(tokens_to_map(y, feature_grid, num_prefix_tokens))

        if self.scan_layers:
            scanned = nn.scan(
                _scan_step_keeping_outputs if keep else _scan_step,
                variable_axes={"params": 0},
                split_rngs={"params": True, "dropout": True, "drop_path": True},
                in_axes=(0, nn.broadcast),
                length=self.num_layers,
            )
            x, outputs = scanned(
                block_cls(name=SCANNED_NAME, **block_kw), x, jnp.asarray(rates), deterministic
            )
            if keep:  # sown here: tracers of the scan body must not escape it
                for i in range(self.num_layers):
                    sow(outputs[i])
        else:
            for i in range(self.num_layers):
                x = block_cls(name=f"{LAYER_PREFIX}{i}", **block_kw)(
                    x, float(rates[i]), deterministic
                )
                if keep:
                    sow(x)
        return LayerNorm(
            epsilon=self.layer_norm_epsilon,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="norm",
        )(x)


ENCODER_NAME = "encoder"


def _map_encoders(tree, fn):
    """Applies ``fn`` to every subtree named ``encoder`` in a nested-dict variables tree."""
    if not isinstance(tree, dict | nn.FrozenDict):
        return tree
    return {
        k: fn(dict(v))
        if k == ENCODER_NAME and isinstance(v, dict | nn.FrozenDict)
        else _map_encoders(v, fn)
        for k, v in tree.items()
    }


def unstack_encoder_params(tree):
    """Scanned layout -> unrolled, in every ``encoder`` subtree: ``blocks`` with leading axis L
    becomes ``block_0`` ... ``block_{L-1}``. Works on any variables-shaped tree (params, the
    matching parts of optimizer state); returns a new tree of plain dicts."""

    def fn(d):
        if SCANNED_NAME not in d:
            return d
        stacked = d.pop(SCANNED_NAME)
        length = jax.tree.leaves(stacked)[0].shape[0]
        for i in range(length):
            d[f"{LAYER_PREFIX}{i}"] = jax.tree.map(lambda a, i=i: a[i], stacked)
        return d

    return _map_encoders(tree, fn)


def stack_encoder_params(tree):
    """Unrolled layout -> scanned, in every ``encoder`` subtree: ``block_0`` ... ``block_{L-1}``
    become one ``blocks`` subtree with a leading axis of length L (inverse of
    ``unstack_encoder_params``)."""

    def fn(d):
        names = [k for k in d if k.startswith(LAYER_PREFIX) and k[len(LAYER_PREFIX) :].isdigit()]
        if not names:
            return d
        layers = [d.pop(f"{LAYER_PREFIX}{i}") for i in range(len(names))]
        d[SCANNED_NAME] = jax.tree.map(lambda *a: jnp.stack(a), *layers)
        return d

    return _map_encoders(tree, fn)
