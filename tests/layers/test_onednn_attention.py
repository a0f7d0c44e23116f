"""jaxvision.layers.onednn_attention (oneDNN's batched matmul + softmax as XLA FFI custom calls)
gives what the reference attention gives: values against numpy, gradients and second-order
gradients against JAX's autodiff of the written-out form, over odd shapes and both dtypes;
``dot_product_attention`` uses it where it applies and only there."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.layers import using_conv_impl
from jaxvision.layers.attention import dot_product_attention, reference_attention
from tests.layers.onednn_testing import jaxpr_text, needs_onednn, one_device, several_devices  # noqa: F401

oa = importlib.import_module("jaxvision.layers.onednn_attention")

pytestmark = pytest.mark.usefixtures("one_device")

# bf16: both sides multiply the same bf16 numbers with float32 accumulation and round the
# probabilities (and their cotangent) to bf16 once; what differs is summation order.
TOLS = {jnp.float32: dict(rtol=2e-5, atol=2e-5), jnp.bfloat16: dict(rtol=2e-2, atol=2e-2)}


def _numpy_attention(q, k, v):
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    s = np.einsum("nqhd,nkhd->nhqk", q, k) / np.sqrt(q.shape[-1])
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("nhqk,nkhd->nqhd", p, v)


def _qkv(rng, shape, dtype, n=3):
    return [jnp.asarray(rng.normal(size=shape), dtype) for _ in range(n)]


@needs_onednn
def test_builds_and_registers_here():
    assert oa.available(), oa.why_unavailable()


@needs_onednn
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("shape", [
    (1, 1, 1, 1),       # one token, one head, width 1
    (2, 5, 3, 4),       # nothing a power of two
    (3, 17, 2, 33),     # odd token count and head width
    (2, 197, 6, 64),    # ViT-S/16's
])
def test_values_and_gradients_match_reference(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    q, k, v, ct = _qkv(rng, shape, dtype, 4)
    got, vjp = jax.vjp(oa.onednn_attention, q, k, v)
    assert got.shape == shape and got.dtype == dtype
    tol = TOLS[dtype]
    np.testing.assert_allclose(np.asarray(got, np.float32), _numpy_attention(q, k, v), **tol)
    # Gradients: JAX's autodiff of the written-out attention (for bf16, the float32-accumulating
    # form with the same rounding points).
    want = jax.vjp(reference_attention if dtype == jnp.float32 else
                   (lambda *a: dot_product_attention(*a, implementation="float32_accumulate")),
                   q, k, v)[1](ct)
    for g, w in zip(vjp(ct), want, strict=True):
        assert g.dtype == dtype
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(w, np.float32), **tol)


@needs_onednn
@pytest.mark.parametrize("setting", ["native", "float32"])
def test_bf16_in_either_form(monkeypatch, setting):
    """Natively (AMX CPUs) bf16 attention rounds as the float32-accumulating form; on float32
    copies (``onednn_bf16``, CPUs without AMX) it is float32 attention of the bf16 inputs,
    rounded once: values and gradients within one bf16 rounding of that."""
    monkeypatch.setenv("JAXVISION_ONEDNN_BF16", setting)
    rng = np.random.default_rng(7)
    q, k, v, ct = _qkv(rng, (2, 33, 3, 16), jnp.bfloat16, 4)
    got, vjp = jax.vjp(oa.onednn_attention, q, k, v)
    if setting == "native":
        def ref(*a):
            return dot_product_attention(*a, implementation="float32_accumulate")
    else:
        def ref(*a):
            return reference_attention(*(x.astype(jnp.float32) for x in a))
    want, want_vjp = jax.vjp(ref, q, k, v)
    tol = dict(rtol=2 ** -7, atol=2 ** -9) if setting == "float32" else TOLS[jnp.bfloat16]
    pairs = [(got, want)] + list(zip(vjp(ct), want_vjp(ct.astype(want.dtype)), strict=True))
    for g, w in pairs:
        assert g.dtype == jnp.bfloat16
        np.testing.assert_allclose(np.asarray(g, np.float32), np.asarray(w, np.float32), **tol)


@needs_onednn
def test_second_order_matches_reference():
    # A gradient penalty differentiates the backward pass: its derivative must be right too.
    rng = np.random.default_rng(1)
    q, k, v = _qkv(rng, (2, 6, 2, 5), jnp.float32)

    def penalty(attn, q, k, v):
        g = jax.grad(lambda q, k, v: jnp.sum(jnp.tanh(attn(q, k, v)) ** 2), (0, 1, 2))(q, k, v)
        return sum(jnp.sum(jnp.sin(x)) for x in g)

    got = jax.grad(penalty, (1, 2, 3))(oa.onednn_attention, q, k, v)
    want = jax.grad(penalty, (1, 2, 3))(reference_attention, q, k, v)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


@needs_onednn
def test_dot_product_attention_uses_it_where_it_applies_only():
    q = k = v = jnp.ones((2, 5, 2, 4))
    f = lambda q, k, v: dot_product_attention(q, k, v)  # noqa: E731
    assert jaxpr_text(f, q, k, v).count("jaxvision_onednn_attention") == 1
    grad = jax.grad(lambda q: jnp.sum(f(q, k, v)))
    assert jaxpr_text(grad, q).count("jaxvision_onednn_attention") == 2  # forward, backward
    mask = jnp.ones((5, 5), bool)
    for text in (
        jaxpr_text(lambda q: dot_product_attention(q, k, v, mask), q),           # a mask
        jaxpr_text(lambda q: dot_product_attention(q, q[:, :3], q[:, :3]), q),    # Tk != Tq
        jaxpr_text(f, *(a.astype(jnp.float16) for a in (q, k, v))),               # float16
        jaxpr_text(lambda q: dot_product_attention(q, k, v, implementation="xla"), q),
    ):
        assert "jaxvision_onednn_attention" not in text
    with using_conv_impl("xla"):  # what exports and forward-mode autodiff use
        assert "ffi_call" not in jaxpr_text(f, q, k, v)
    with pytest.raises(ValueError, match="one shape"):
        oa.onednn_attention(q, q[:, :3], q[:, :3])


@needs_onednn
def test_not_used_with_several_devices(monkeypatch):
    several_devices(monkeypatch)
    q = jnp.ones((2, 5, 2, 4))
    assert not oa.onednn_attention_applies(q, q, q)
    assert "ffi_call" not in jaxpr_text(lambda q: dot_product_attention(q, q, q), q)
