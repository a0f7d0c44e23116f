"""Multi-head self-attention (Flax Linen) on token sequences (N, T, D).

The attention core goes through ``jax.nn.dot_product_attention`` so that GPUs get cuDNN's fused
(flash) kernel; ``implementation='reference'`` selects an explicit einsum/softmax version, the one
to test against and the one that supports attention dropout.

Parameter layout follows ``flax.linen.MultiHeadDotProductAttention`` and the ViT paper's code
(google-research/vision_transformer): ``query``/``key``/``value`` kernels (D, H, D/H), biases
(H, D/H), ``out`` kernel (H, D/H, D), bias (D). The parameter count equals timm's fused ``qkv`` +
``proj`` layout (3D^2 + 3D + D^2 + D).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.layers import onednn_attention as _onednn
from jaxvision.layers.dense import Dense
from jaxvision.layers.lowering import LOW_PRECISION, conv_impl

__all__ = [
    "ATTENTION_IMPLEMENTATIONS",
    "MultiHeadSelfAttention",
    "dot_product_attention",
    "float32_accumulating_attention",
    "reference_attention",
]

ATTENTION_IMPLEMENTATIONS = ("auto", "xla", "cudnn", "float32_accumulate", "reference")


def _as_4d_mask(mask):
    """Boolean mask broadcastable to (N, H, Tq, Tk); True = attend."""
    if mask is None:
        return None
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_:
        raise TypeError(f"attention mask must be boolean (True = attend), got {mask.dtype}")
    if mask.ndim > 4:
        raise ValueError(f"attention mask must broadcast to (N, H, Tq, Tk), got shape {mask.shape}")
    return jnp.expand_dims(mask, tuple(range(4 - mask.ndim)))


def _attention_scale(q):
    return 1.0 / jnp.sqrt(jnp.asarray(q.shape[-1], jnp.float32))


def _attention_weights(q, k, mask):
    """softmax(q k^T / sqrt(d)) in float32, (N, H, Tq, Tk); mask 4-d boolean or None."""
    logits = jnp.einsum("nqhd,nkhd->nhqk", q, k, preferred_element_type=jnp.float32)
    logits = logits * _attention_scale(q)
    if mask is not None:
        logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
    return jax.nn.softmax(logits, axis=-1)


def reference_attention(q, k, v, mask=None, *, dropout_rate=0.0, dropout_rng=None):
    """softmax(q k^T / sqrt(d)) v written out, logits and softmax in float32.

    Args:
      q: (N, Tq, H, Dh); k, v: (N, Tk, H, Dh), all of one dtype.
      mask: optional boolean, broadcastable to (N, H, Tq, Tk); True = attend.
      dropout_rate: dropout on the attention weights (needs ``dropout_rng`` when > 0).

    Returns:
      (N, Tq, H, Dh) in the dtype of ``q``.
    """
    weights = _attention_weights(q, k, _as_4d_mask(mask))
    if dropout_rate > 0.0:
        if dropout_rng is None:
            raise ValueError("attention dropout needs a dropout_rng")
        keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, weights.shape)
        weights = jnp.where(keep, weights / (1.0 - dropout_rate), 0.0)
    return jnp.einsum("nhqk,nkhd->nqhd", weights.astype(v.dtype), v)


def _attention_forward(q, k, v, mask):
    p = _attention_weights(q, k, mask)
    out = jnp.einsum("nhqk,nkhd->nqhd", p.astype(v.dtype), v, preferred_element_type=jnp.float32)
    return out.astype(q.dtype), p


@jax.custom_vjp
def float32_accumulating_attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d)) v for bf16/fp16 q, k, v where all six products (two forward, four
    backward) are low-precision x low-precision -> float32 and softmax is float32.

    Autodiff of the reference version mixes a float32 cotangent with a bf16 operand, which
    XLA:CPU computes in float32; this form keeps every product on the bf16 matrix units (AMX) and
    is what ``implementation='auto'`` runs for low-precision inputs on the CPU backend.
    Shapes as ``reference_attention``; mask: boolean broadcastable to (N, H, Tq, Tk) or None.
    """
    return _attention_forward(q, k, v, mask)[0]


def _f32acc_attention_fwd(q, k, v, mask=None):
    out, p = _attention_forward(q, k, v, mask)
    return out, (q, k, v, p)


def _f32acc_attention_bwd(res, dout):
    q, k, v, p = res
    scale = _attention_scale(q)
    dout = dout.astype(v.dtype)
    f32 = jnp.float32
    dv = jnp.einsum("nhqk,nqhd->nkhd", p.astype(v.dtype), dout, preferred_element_type=f32)
    dp = jnp.einsum("nqhd,nkhd->nhqk", dout, v, preferred_element_type=f32)
    # Softmax derivative; masked positions have p == 0 and so get no gradient.
    ds = (p * (dp - jnp.sum(p * dp, axis=-1, keepdims=True)) * scale).astype(q.dtype)
    dq = jnp.einsum("nhqk,nkhd->nqhd", ds, k, preferred_element_type=f32)
    dk = jnp.einsum("nhqk,nqhd->nkhd", ds, q, preferred_element_type=f32)
    return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), None


float32_accumulating_attention.defvjp(_f32acc_attention_fwd, _f32acc_attention_bwd)


def _cudnn_can_run(q) -> bool:
    # cuDNN flash attention: GPU, half precision, head dim a multiple of 8 up to 128.
    head_dim = q.shape[-1]
    return (
        jax.default_backend() == "gpu"
        and q.dtype in (jnp.bfloat16, jnp.float16)
        and head_dim % 8 == 0
        and head_dim <= 128
    )


def dot_product_attention(
    q, k, v, mask=None, *, implementation="auto", dropout_rate=0.0, dropout_rng=None
):
    """Scaled dot-product attention with a selectable implementation.

    Args:
      q: (N, Tq, H, Dh); k, v: (N, Tk, H, Dh).
      mask: optional boolean, broadcastable to (N, H, Tq, Tk); True = attend.
      implementation: ``'auto'`` (cuDNN's fused kernel where it can run; on the CPU backend
        oneDNN's (``jaxvision.layers.onednn_attention``) where it applies, else
        ``'float32_accumulate'`` for bf16/fp16 inputs; else XLA), ``'xla'``, ``'cudnn'`` (both
        through ``jax.nn.dot_product_attention``), ``'float32_accumulate'``
        (``float32_accumulating_attention``) or ``'reference'``.
      dropout_rate, dropout_rng: attention-weight dropout; the fused kernels have none, so a
        positive rate always runs the reference implementation.

    Returns:
      (N, Tq, H, Dh) in the dtype of ``q``; softmax is computed in float32 by every implementation.
    """
    if implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(
            f"unknown attention implementation {implementation!r}; "
            f"choose one of {ATTENTION_IMPLEMENTATIONS}"
        )
    if implementation == "reference" or dropout_rate > 0.0:
        return reference_attention(
            q, k, v, mask, dropout_rate=dropout_rate, dropout_rng=dropout_rng
        )
    mask = _as_4d_mask(mask)
    if implementation == "auto":
        if _cudnn_can_run(q):
            try:
                return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="cudnn")
            except Exception:  # noqa: BLE001 - unsupported shape/GPU: fall back to XLA
                pass
        if conv_impl() == "onednn" and _onednn.onednn_attention_applies(q, k, v, mask):
            return _onednn.onednn_attention(q, k, v)
        low = q.dtype in LOW_PRECISION
        implementation = "float32_accumulate" if low and jax.default_backend() == "cpu" else "xla"
    if implementation == "float32_accumulate":
        return float32_accumulating_attention(q, k, v, mask)
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=implementation)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention over tokens.

    Input (N, T, D) -> output (N, T, D) in ``dtype``; parameters in ``param_dtype``.

    Attributes:
      num_heads: number of heads H; D must be divisible by H.
      qkv_bias: biases on the query/key/value projections.
      attn_drop_rate: dropout on the attention weights (uses the 'dropout' RNG stream).
      implementation: see ``dot_product_attention``.
    """

    num_heads: int
    qkv_bias: bool = True
    attn_drop_rate: float = 0.0
    implementation: str = "auto"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.xavier_uniform()
    bias_init: Any = nn.initializers.zeros

    @nn.compact
    def __call__(self, x, mask=None, deterministic: bool = True):
        if x.ndim != 3:
            raise ValueError(f"attention expects tokens (N, T, D), got shape {x.shape}")
        width = x.shape[-1]
        if width % self.num_heads:
            raise ValueError(
                f"token width {width} is not divisible by num_heads={self.num_heads}; "
                "choose a head count that divides the width"
            )
        head_dim = width // self.num_heads

        def project(name):
            return Dense(
                features=(self.num_heads, head_dim),
                use_bias=self.qkv_bias,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                kernel_init=self.kernel_init,
                bias_init=self.bias_init,
                name=name,
            )(x)

        q, k, v = project("query"), project("key"), project("value")  # (N, T, H, Dh)
        use_dropout = self.attn_drop_rate > 0.0 and not deterministic
        y = dot_product_attention(
            q,
            k,
            v,
            mask,
            implementation=self.implementation,
            dropout_rate=self.attn_drop_rate if use_dropout else 0.0,
            dropout_rng=self.make_rng("dropout") if use_dropout else None,
        )
        return Dense(
            features=width,
            in_axes=2,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=self.kernel_init,
            bias_init=self.bias_init,
            name="out",
        )(y)
