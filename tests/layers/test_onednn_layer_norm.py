"""jaxvision.layers.onednn_layer_norm (oneDNN's layer normalization as XLA FFI custom calls) gives
what layer normalization is: values and gradients against numpy's float64 formulas, second-order
gradients against JAX's autodiff of Flax's LayerNorm; ``norm.LayerNorm`` uses it where it applies
and only there, with Flax's parameters."""

import importlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.layers import using_conv_impl
from jaxvision.layers.norm import LayerNorm
from tests.layers.onednn_testing import jaxpr_text, needs_onednn, one_device, several_devices  # noqa: F401

oln = importlib.import_module("jaxvision.layers.onednn_layer_norm")

pytestmark = pytest.mark.usefixtures("one_device")


def _numpy_layer_norm(x, scale, shift, eps, dy):
    """y and the gradients (dx, dscale, dshift) of sum(y * dy), float64, from the formulas."""
    x, scale, shift, dy = (np.asarray(a, np.float64) for a in (x, scale, shift, dy))
    mean = x.mean(-1, keepdims=True)
    rstd = 1 / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps)
    xhat = (x - mean) * rstd
    g = dy * scale
    dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    rows = tuple(range(x.ndim - 1))
    return xhat * scale + shift, dx, (dy * xhat).sum(rows), dy.sum(rows)


@needs_onednn
def test_builds_and_registers_here():
    assert oln.available(), oln.why_unavailable()


@needs_onednn
@pytest.mark.parametrize("shape,offset,eps", [
    ((7, 3), 0.0, 1e-6),
    ((2, 197, 384), 0.0, 1e-6),  # ViT-S/16 tokens
    ((2, 4, 5, 96), 3.0, 1e-5),  # Swin / ConvNeXt channels-last maps, rows with a large mean
    ((1, 1), 0.0, 1e-6),  # one feature: x_hat is 0, the gradient w.r.t. x too
])
def test_values_and_gradients_match_the_formulas(shape, offset, eps):
    rng = np.random.default_rng(shape[-1])
    x = jnp.asarray(rng.normal(size=shape) * 2 + offset, jnp.float32)
    scale, shift = (jnp.asarray(rng.normal(size=shape[-1:]), jnp.float32) for _ in range(2))
    dy = jnp.asarray(rng.normal(size=shape), jnp.float32)
    y, vjp = jax.vjp(lambda *a: oln.onednn_layer_norm(*a, eps), x, scale, shift)
    want = _numpy_layer_norm(x, scale, shift, eps, dy)
    assert y.shape == shape and y.dtype == jnp.float32
    for got, ref in zip((y, *vjp(dy)), want, strict=True):
        np.testing.assert_allclose(got, ref, rtol=2e-5, atol=2e-5 * max(1.0, np.abs(ref).max()))


@needs_onednn
def test_second_order_matches_flax():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(4, 9)) * 3, jnp.float32)
    params = {"scale": jnp.asarray(rng.normal(size=9), jnp.float32),
              "bias": jnp.asarray(rng.normal(size=9), jnp.float32)}
    flax_ln = nn.LayerNorm(epsilon=1e-6, use_fast_variance=False)

    def penalty(f, params, x):  # a gradient penalty: reverse over reverse through both inputs
        g = jax.grad(lambda x: jnp.sum(jnp.sin(f(params, x))))(x)
        return jnp.sum(g ** 2)

    ours = lambda p, x: oln.onednn_layer_norm(x, p["scale"], p["bias"], 1e-6)  # noqa: E731
    theirs = lambda p, x: flax_ln.apply({"params": p}, x)  # noqa: E731
    got = jax.grad(penalty, (1, 2))(ours, params, x)
    want = jax.grad(penalty, (1, 2))(theirs, params, x)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@needs_onednn
def test_layer_norm_uses_it_where_it_applies_only(monkeypatch):
    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 6, 8)), jnp.float32)
    ln = LayerNorm()
    variables = ln.init(jax.random.key(0), x)
    # Flax's parameters, names, shapes and initial values: checkpoints move between the forms.
    flax_vars = nn.LayerNorm().init(jax.random.key(0), x)
    assert jax.tree.structure(variables) == jax.tree.structure(flax_vars)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(variables),
                                                    jax.tree.leaves(flax_vars), strict=True))
    grad = jax.grad(lambda v, x: jnp.sum(ln.apply(v, x) ** 2), (0, 1))
    assert jaxpr_text(grad, variables, x).count("jaxvision_onednn_layer_norm") == 2
    flax_form = nn.LayerNorm(epsilon=1e-6, use_fast_variance=False)
    np.testing.assert_allclose(ln.apply(variables, x), flax_form.apply(variables, x),
                               rtol=1e-5, atol=1e-5)
    # Configurations the handler does not compute keep Flax's code, with the same parameters.
    others = {
        "bf16 input": (ln, x.astype(jnp.bfloat16)),
        "bf16 compute": (LayerNorm(dtype=jnp.bfloat16), x),
        "no bias": (LayerNorm(use_bias=False), x),
        "other axis": (LayerNorm(reduction_axes=1, feature_axes=1), x),
        "empty": (ln, jnp.ones((0, 8))),
    }
    for what, (module, xx) in others.items():
        v = module.init(jax.random.key(0), xx)
        assert "ffi_call" not in jaxpr_text(module.apply, v, xx), what
    with using_conv_impl("xla"):
        assert "ffi_call" not in jaxpr_text(lambda x: ln.apply(variables, x), x)
        jax.jvp(lambda x: ln.apply(variables, x), (x,), (x,))  # forward mode on Flax's form
    # Several devices: Flax's form, and a module first traced there initializes as before.
    several_devices(monkeypatch)
    assert "ffi_call" not in jaxpr_text(lambda x: ln.apply(variables, x), x)
    again = ln.init(jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, again) == jax.tree.map(jnp.shape, variables)


@needs_onednn
def test_per_example_gradients_under_vmap():
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(3, 5, 8)), jnp.float32)
    scale, shift = jnp.ones(8) * 1.5, jnp.zeros(8) + 0.25
    f = lambda s, x: jnp.sum(jnp.tanh(oln.onednn_layer_norm(x, s, shift, 1e-6)))  # noqa: E731
    got = jax.jit(jax.vmap(jax.grad(f), (None, 0)))(scale, x)
    ref = nn.LayerNorm(epsilon=1e-6, use_fast_variance=False)
    g = lambda s, x: jnp.sum(jnp.tanh(ref.apply({"params": {"scale": s, "bias": shift}}, x)))  # noqa: E731
    want = jax.vmap(jax.grad(g), (None, 0))(scale, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_bad_operands_are_refused_with_the_shapes():
    x = jnp.ones((2, 4))
    for bad in (x.astype(jnp.float16), x.astype(jnp.bfloat16)):
        with pytest.raises(ValueError, match="float32 x"):
            oln.onednn_layer_norm(bad, jnp.ones(4), jnp.zeros(4), 1e-6)
    with pytest.raises(ValueError, match=r"scale \(3,\)"):
        oln.onednn_layer_norm(x, jnp.ones(3), jnp.zeros(4), 1e-6)
    assert not oln.onednn_layer_norm_applies(x, jnp.ones(4, jnp.bfloat16), jnp.zeros(4))


@needs_onednn
def test_third_order_matches_flax():
    # Found by a breaker: the third derivative met the bare custom call (no derivative) because
    # the reference-derivative wrapper's forward rule called it directly.
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.normal(size=(2, 4)), jnp.float32)
    scale, shift = jnp.asarray([1.0, 2.0, -1.0, 0.5]), jnp.zeros(4)
    w = jnp.arange(8.0).reshape(2, 4)
    flax_ln = nn.LayerNorm(epsilon=1e-6, use_fast_variance=False)

    def third(f):
        first = jax.grad(lambda x: jnp.sum(jnp.sin(f(x))))
        second = jax.grad(lambda x: jnp.sum(first(x) ** 2))
        return jax.grad(lambda x: jnp.sum(w * second(x)))(x)

    got = third(lambda x: oln.onednn_layer_norm(x, scale, shift, 1e-6))
    want = third(lambda x: flax_ln.apply({"params": {"scale": scale, "bias": shift}}, x))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(jnp.abs(want).max()))


@needs_onednn
def test_both_forms_compute_the_same_variance(monkeypatch):
    # Rows whose mean is large against their spread: Flax's default E[x^2] - E[x]^2 collapsed to
    # a variance of 0 there (errors ~1e3), so one module gave other numbers under
    # using_conv_impl('xla') or on several devices than on oneDNN. norm.LayerNorm computes the
    # mean of squared deviations in both forms; asking for the fast form keeps Flax's code.
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.normal(size=(4, 384)) + 3000.0, jnp.float32)
    ln = LayerNorm()
    v = ln.init(jax.random.key(0), x)
    exact = _numpy_layer_norm(x, v["params"]["scale"], v["params"]["bias"], 1e-6, x)[0]
    assert "ffi_call" in jaxpr_text(ln.apply, v, x)
    tolerance = 1e-3  # float32 holds x - mean to ~3000 * 6e-8 = 2e-4 of a unit spread
    np.testing.assert_allclose(ln.apply(v, x), exact, atol=tolerance)
    with using_conv_impl("xla"):
        np.testing.assert_allclose(ln.apply(v, x), exact, atol=tolerance)
    assert "ffi_call" not in jaxpr_text(LayerNorm(use_fast_variance=True).apply, v, x)
    # The last axis named as a tuple, or by its index, is the same norm.
    for axes in ((-1,), (1,), 1):
        same = LayerNorm(reduction_axes=axes, feature_axes=axes)
        assert "ffi_call" in jaxpr_text(same.apply, v, x), axes
    several_devices(monkeypatch)
    assert "ffi_call" not in jaxpr_text(ln.apply, v, x)
    np.testing.assert_allclose(ln.apply(v, x), exact, atol=tolerance)


@needs_onednn
def test_non_arrays_are_refused_with_the_arguments():
    with pytest.raises(ValueError, match="scale None"):
        oln.onednn_layer_norm(jnp.ones((2, 4)), None, jnp.zeros(4), 1e-6)
