"""The CPU lowerings of jaxvision.layers.lowering give what XLA's convolution gives: values and
gradients (w.r.t. input and kernel) for pointwise and depthwise convolutions over strides,
paddings, dilations, channel multipliers and dtypes."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.layers import conv2d, conv_impl, set_conv_impl, weight_grad
from jaxvision.layers.lowering import explicit_padding


def _loss(impl, **kw):
    # A non-linear read-out so that every output position gets a distinct cotangent.
    def f(x, w):
        y = conv2d(x, w, impl=impl, **kw)
        return jnp.sum(jnp.sin(y.astype(jnp.float32)) * jnp.arange(y.size).reshape(y.shape) / y.size)

    return f


def _check_against_xla(x, w, rtol, impl="cpu", **kw):
    y_cpu = conv2d(x, w, impl=impl, **kw)
    y_xla = conv2d(x, w, impl="xla", **kw)
    chex.assert_equal_shape([y_cpu, y_xla])
    assert y_cpu.dtype == x.dtype
    g_cpu = jax.grad(_loss(impl, **kw), (0, 1))(x, w)
    g_xla = jax.grad(_loss("xla", **kw), (0, 1))(x, w)
    for a, b in [(y_cpu, y_xla), *zip(g_cpu, g_xla, strict=True)]:
        assert a.dtype == b.dtype
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


@pytest.mark.parametrize("dtype,rtol", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
@pytest.mark.parametrize(
    "size,strides,padding",
    [(8, (1, 1), "SAME"), (7, (2, 2), "SAME"), (8, (2, 2), "VALID"), (9, (1, 2), [(0, 0), (0, 0)])],
)
def test_pointwise_matches_xla(size, strides, padding, dtype, rtol):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, size, size, 5)), dtype)
    w = jnp.asarray(rng.normal(size=(1, 1, 5, 7)), dtype)
    _check_against_xla(x, w, rtol, strides=strides, padding=padding)


@pytest.mark.parametrize("dtype,rtol", [(jnp.float32, 1e-5), (jnp.bfloat16, 3e-2)])
@pytest.mark.parametrize(
    "k,stride,dilation,padding,multiplier,size",
    [
        (3, 1, 1, "SAME", 1, 8),
        (3, 2, 1, "SAME", 1, 7),
        (5, 2, 1, "SAME", 1, 8),
        (3, 1, 2, "SAME", 1, 9),
        (3, 2, 1, "VALID", 1, 9),
        (5, 1, 1, [(2, 1), (0, 3)], 1, 7),
        (3, 2, 1, [(1, 1), (1, 1)], 3, 8),
    ],
)
def test_depthwise_matches_xla(k, stride, dilation, padding, multiplier, size, dtype, rtol):
    rng = np.random.default_rng(1)
    c = 4
    x = jnp.asarray(rng.normal(size=(2, size, size, c)), dtype)
    w = jnp.asarray(rng.normal(size=(k, k, 1, c * multiplier)), dtype)
    _check_against_xla(
        x, w, rtol, strides=(stride, stride), padding=padding, dilation=(dilation, dilation),
        groups=c,
    )


def test_other_convolutions_are_unchanged():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(2, 6, 6, 4)), jnp.float32)
    for w, groups, pad in [
        (rng.normal(size=(3, 3, 4, 6)), 1, "SAME"),  # dense 3x3: XLA's conv on every backend
        (rng.normal(size=(3, 3, 2, 6)), 2, "SAME"),  # grouped, not depthwise
        (rng.normal(size=(1, 1, 4, 6)), 1, [(1, 1), (1, 1)]),  # padded 1x1
    ]:
        w = jnp.asarray(w, jnp.float32)
        a = conv2d(x, w, padding=pad, groups=groups, impl="cpu")
        b = conv2d(x, w, padding=pad, groups=groups, impl="xla")
        chex.assert_trees_all_close(a, b, rtol=1e-5, atol=1e-5)


def test_weight_grad_either_operand_order():
    rng = np.random.default_rng(3)
    for kc, nc in [(3, 8), (8, 3)]:
        x = rng.normal(size=(2, 5, kc)).astype(np.float32)
        g = rng.normal(size=(2, 5, nc)).astype(np.float32)
        got = weight_grad(jnp.asarray(x), jnp.asarray(g), 2)
        chex.assert_shape(got, (kc, nc))
        np.testing.assert_allclose(got, np.einsum("bmk,bmn->kn", x, g), rtol=1e-5, atol=1e-5)


def test_explicit_padding_matches_tf_same():
    # TF "SAME": total = max((ceil(n/s) - 1) * s + k - n, 0), the odd pixel at the end.
    assert explicit_padding("SAME", (7, 8), (3, 3), (2, 2), (1, 1)) == [(1, 1), (0, 1)]
    assert explicit_padding("SAME", (9, 9), (3, 3), (1, 1), (2, 2)) == [(2, 2), (2, 2)]
    assert explicit_padding("VALID", (9, 9), (3, 3), (1, 1), (1, 1)) == [(0, 0), (0, 0)]


def test_impl_selection_and_errors(monkeypatch):
    assert conv_impl() == "onednn"  # the test machine's backend is the CPU
    monkeypatch.setenv("JAXVISION_CONV_IMPL", "xla")
    assert conv_impl() == "xla"
    try:
        set_conv_impl("cpu")
        assert conv_impl() == "cpu"  # set_conv_impl wins over the environment
    finally:
        set_conv_impl(None)
    assert conv_impl() == "xla"
    monkeypatch.setenv("JAXVISION_CONV_IMPL", "fast")
    with pytest.raises(ValueError, match="JAXVISION_CONV_IMPL"):
        conv_impl()
    with pytest.raises(ValueError, match="unknown conv impl"):
        set_conv_impl("cudnn")


@pytest.mark.parametrize("dtype,rtol", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
@pytest.mark.parametrize("size,patch,padding", [(8, 4, "VALID"), (9, 3, "SAME"), (10, 4, "VALID")])
def test_patchify_matches_xla(size, patch, padding, dtype, rtol):
    # kernel == stride: ViT's patch embedding; 10 px with 4 px patches drops the last 2 (VALID).
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(2, size, size, 3)), dtype)
    w = jnp.asarray(rng.normal(size=(patch, patch, 3, 5)), dtype)
    _check_against_xla(x, w, rtol, strides=(patch, patch), padding=padding)


@pytest.mark.parametrize(
    "lowering,k,stride,dilation,padding,size,cin,cout",
    [("taps", 5, 1, 2, "SAME", 9, 5, 2),  # 5+ input channels (fewer: narrow_conv's)
     ("taps", 7, 2, 1, [(3, 3), (3, 3)], 8, 6, 2), ("taps", 3, 1, 1, [(0, 2), (1, 0)], 6, 5, 3),
     ("xla", 3, 2, 1, "SAME", 8, 6, 4)],
)
def test_bf16_kxk_taps_match_xla(lowering, k, stride, dilation, padding, size, cin, cout):
    # Dense bf16 k x k convolutions: each pass as per-tap matmuls (or, forced, XLA's conv inside
    # the same custom VJP) gives XLA's convolution's values and gradients.
    from jaxvision.layers.conv_cost import forced_choice

    rng = np.random.default_rng(k * 10 + stride)
    x = jnp.asarray(rng.normal(size=(2, size, size + 1, cin)), jnp.bfloat16)
    w = jnp.asarray(rng.normal(size=(k, k, cin, cout)), jnp.bfloat16)
    with forced_choice(lowering):
        jaxpr = str(jax.make_jaxpr(lambda x, w: conv2d(x, w, padding=padding, impl="cpu"))(x, w))
        assert ("conv_general_dilated" in jaxpr) == (lowering == "xla")
        _check_against_xla(x, w, 3e-2, strides=(stride, stride), padding=padding,
                           dilation=(dilation, dilation))


def test_float32_kxk_stays_on_xla():
    # The per-tap form only pays with bf16 products; float32 k x k convolutions keep XLA's.
    x, w = jnp.ones((1, 6, 6, 8)), jnp.ones((3, 3, 8, 4))  # 8 channels: not a narrow_conv
    assert "conv_general_dilated" in str(jax.make_jaxpr(lambda x, w: conv2d(x, w, impl="cpu"))(x, w))
