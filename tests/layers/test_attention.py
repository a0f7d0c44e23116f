"""Attention equals softmax(Q K^T / sqrt(d)) V written in numpy, for every implementation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.layers.attention import (
    MultiHeadSelfAttention,
    dot_product_attention,
    reference_attention,
)


def numpy_attention(q, k, v, mask=None):
    """q (N, Tq, H, D), k/v (N, Tk, H, D); mask (N, H, Tq, Tk) bool, True = attend."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    logits = np.einsum("nqhd,nkhd->nhqk", q, k) / np.sqrt(q.shape[-1])
    if mask is not None:
        logits = np.where(mask, logits, -np.inf)
    logits -= logits.max(-1, keepdims=True)
    w = np.exp(logits)
    w /= w.sum(-1, keepdims=True)
    return np.einsum("nhqk,nkhd->nqhd", w, v)


def _qkv(seed=0, n=2, t=7, h=3, d=8):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, t, h, d)).astype(np.float32) for _ in range(3)]


def _mask(n=2, h=3, t=7, seed=1):
    m = np.random.default_rng(seed).random((n, h, t, t)) > 0.4
    m[..., 0] = True  # every query attends to at least one key
    return m


@pytest.mark.parametrize("impl", ["reference", "xla", "float32_accumulate", "auto"])
@pytest.mark.parametrize("masked", [False, True])
def test_attention_equals_numpy(impl, masked):
    q, k, v = _qkv()
    mask = _mask() if masked else None
    out = dot_product_attention(q, k, v, mask, implementation=impl)
    chex.assert_shape(out, q.shape)
    chex.assert_trees_all_close(out, numpy_attention(q, k, v, mask).astype(np.float32), atol=1e-5)


def test_broadcast_mask_and_key_padding():
    q, k, v = _qkv()
    # A key-padding mask (N, 1, 1, Tk) broadcast over heads and queries: padded keys are ignored,
    # so attending over the first 4 keys equals attention on the truncated sequence.
    mask = np.zeros((2, 1, 1, 7), bool)
    mask[..., :4] = True
    for impl in ("reference", "xla"):
        out = dot_product_attention(q, k, v, mask, implementation=impl)
        chex.assert_trees_all_close(
            out, numpy_attention(q, k[:, :4], v[:, :4]).astype(np.float32), atol=1e-5
        )


def test_bf16_softmax_in_float32():
    q, k, v = _qkv()
    qb, kb, vb = (jnp.asarray(a, jnp.bfloat16) for a in (q, k, v))
    expected = numpy_attention(qb.astype(np.float32), kb.astype(np.float32), vb.astype(np.float32))
    for impl in ("reference", "xla", "float32_accumulate", "auto"):
        out = dot_product_attention(qb, kb, vb, implementation=impl)
        assert out.dtype == jnp.bfloat16
        chex.assert_trees_all_close(out.astype(np.float32), expected.astype(np.float32), atol=3e-2)


@pytest.mark.parametrize("masked", [False, True])
def test_float32_accumulating_attention_gradients(masked):
    # The hand-written VJP against autodiff of the float32 reference on the same bf16 inputs.
    q, k, v = (jnp.asarray(a, jnp.bfloat16) for a in _qkv())
    mask = _mask() if masked else None
    cot = jnp.asarray(np.random.default_rng(5).normal(size=q.shape), jnp.float32)

    def loss(impl, *qkv):
        if impl == "reference":
            qkv = [a.astype(jnp.float32) for a in qkv]
        out = dot_product_attention(*qkv, mask, implementation=impl)
        return jnp.sum(out.astype(jnp.float32) * cot)

    got = jax.grad(lambda *a: loss("float32_accumulate", *a), (0, 1, 2))(q, k, v)
    want = jax.grad(lambda *a: loss("reference", *a), (0, 1, 2))(q, k, v)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == jnp.bfloat16
        scale = float(jnp.max(jnp.abs(w)))
        chex.assert_trees_all_close(g.astype(jnp.float32), w, atol=2e-2 * scale)


def test_multi_head_self_attention_module_equals_numpy():
    n, t, width, heads = 2, 5, 12, 3
    x = np.random.default_rng(2).normal(size=(n, t, width)).astype(np.float32)
    outs = {}
    for impl in ("reference", "auto"):
        module = MultiHeadSelfAttention(num_heads=heads, implementation=impl)
        variables = module.init(jax.random.key(0), x)
        outs[impl] = module.apply(variables, x)
    p = jax.tree.map(np.asarray, variables["params"])
    # Parameter layout of flax's MultiHeadDotProductAttention / the ViT paper's checkpoints.
    chex.assert_shape(p["query"]["kernel"], (width, heads, width // heads))
    chex.assert_shape(p["out"]["kernel"], (heads, width // heads, width))
    proj = {
        name: np.einsum("ntc,chd->nthd", x, p[name]["kernel"]) + p[name]["bias"]
        for name in ("query", "key", "value")
    }
    y = numpy_attention(proj["query"], proj["key"], proj["value"])
    expected = np.einsum("nthd,hdc->ntc", y, p["out"]["kernel"]) + p["out"]["bias"]
    for impl, out in outs.items():
        chex.assert_trees_all_close(
            out, expected.astype(np.float32), atol=1e-5, custom_message=impl
        )
    # Parameter count equals timm's fused qkv + proj: 4 D^2 + 4 D.
    assert sum(a.size for a in jax.tree.leaves(p)) == 4 * width**2 + 4 * width


def test_attention_dropout_only_in_training():
    x = np.random.default_rng(3).normal(size=(2, 6, 8)).astype(np.float32)
    module = MultiHeadSelfAttention(num_heads=2, attn_drop_rate=0.5)
    variables = module.init(jax.random.key(0), x)
    eval_out = module.apply(variables, x)
    plain = MultiHeadSelfAttention(num_heads=2).apply(variables, x)
    chex.assert_trees_all_close(eval_out, plain, atol=1e-6)
    train = [
        module.apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(s)})
        for s in (1, 2)
    ]
    assert not np.allclose(train[0], eval_out)
    assert not np.allclose(train[0], train[1])
    chex.assert_tree_all_finite(train)


def test_bad_inputs_have_clear_errors():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="unknown attention implementation"):
        dot_product_attention(q, k, v, implementation="flash")
    with pytest.raises(TypeError, match="boolean"):
        reference_attention(q, k, v, np.ones((2, 3, 7, 7), np.float32))
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        MultiHeadSelfAttention(num_heads=5).init(jax.random.key(0), np.ones((1, 3, 12)))
    with pytest.raises(ValueError, match=r"\(N, T, D\)"):
        MultiHeadSelfAttention(num_heads=2).init(jax.random.key(0), np.ones((1, 3, 3, 12)))
