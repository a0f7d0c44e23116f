"""jaxvision.layers.onednn_gelu (oneDNN's eltwise GELU as XLA FFI custom calls) gives what
``jax.nn.gelu`` gives, exact and tanh forms: values against scipy-free numpy formulas, gradients
and second-order gradients against JAX's autodiff; ``transformer.gelu`` uses it where it applies
and only there."""

import importlib
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.layers import using_conv_impl
from jaxvision.layers.transformer import gelu
from tests.layers.onednn_testing import jaxpr_text, needs_onednn, one_device, several_devices  # noqa: F401

og = importlib.import_module("jaxvision.layers.onednn_gelu")

pytestmark = pytest.mark.usefixtures("one_device")


def _numpy_gelu(x, approximate):
    x = np.asarray(x, np.float64)
    if approximate:
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


@needs_onednn
def test_builds_and_registers_here():
    assert og.available(), og.why_unavailable()


@needs_onednn
@pytest.mark.parametrize("approximate", [False, True])
# float32: oneDNN's erf/tanh polynomials and XLA's differ by a few ulp, which the derivative of the
# tanh form scales by up to ~x^2 at |x| ~ 3 (seen: 1.3e-5 absolute at values ~1).
@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 3e-5), (jnp.bfloat16, 1e-2)])
@pytest.mark.parametrize("shape", [(1,), (7, 3), (2, 197, 1536)])
def test_values_and_gradients_match(shape, dtype, tol, approximate):
    rng = np.random.default_rng(len(shape))
    # Both tails and the centre: large |x| is where erf/tanh saturate.
    x = jnp.asarray(rng.normal(size=shape) * 4, dtype)
    ct = jnp.asarray(rng.normal(size=shape), dtype)
    y, vjp = jax.vjp(lambda x: og.onednn_gelu(x, approximate), x)
    assert y.shape == shape and y.dtype == dtype
    xf = np.asarray(x, np.float32)
    np.testing.assert_allclose(np.asarray(y, np.float32), _numpy_gelu(xf, approximate),
                               rtol=tol, atol=tol)
    (g,) = vjp(ct)
    (want,) = jax.vjp(lambda x: jax.nn.gelu(x, approximate=approximate),
                      jnp.asarray(xf))[1](jnp.asarray(ct, jnp.float32))
    assert g.dtype == dtype
    np.testing.assert_allclose(np.asarray(g, np.float32), want, rtol=tol, atol=tol)


@needs_onednn
@pytest.mark.parametrize("approximate", [False, True])
def test_second_order_matches_jax(approximate):
    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 9)) * 3, jnp.float32)

    def penalty(f, x):
        return jnp.sum(jax.grad(lambda x: jnp.sum(jnp.sin(f(x))))(x) ** 2)

    got = jax.grad(penalty, 1)(lambda x: og.onednn_gelu(x, approximate), x)
    want = jax.grad(penalty, 1)(lambda x: jax.nn.gelu(x, approximate=approximate), x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_third_order_matches_jax():
    # The reference-derivative wrapper's forward rule once called the bare custom call, which
    # a third derivative then had to differentiate ("cannot be differentiated").
    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 5)) * 2, jnp.float32)

    def third(f):
        first = jax.grad(lambda x: jnp.sum(jnp.sin(f(x))))
        second = jax.grad(lambda x: jnp.sum(first(x) ** 2))
        return jax.grad(lambda x: jnp.sum(jnp.cos(second(x))))(x)

    np.testing.assert_allclose(third(lambda x: og.onednn_gelu(x)),
                               third(lambda x: jax.nn.gelu(x, approximate=False)),
                               rtol=1e-4, atol=1e-4)


@needs_onednn
def test_gelu_uses_it_where_it_applies_only(monkeypatch):
    x = jnp.ones((3, 4))
    grad = jax.grad(lambda x: jnp.sum(gelu(x)))
    assert jaxpr_text(grad, x).count("jaxvision_onednn_gelu") == 2  # forward, backward
    assert "ffi_call" not in jaxpr_text(gelu, x.astype(jnp.float16))
    assert "ffi_call" not in jaxpr_text(gelu, jnp.ones((0, 4)))
    with using_conv_impl("xla"):
        assert "ffi_call" not in jaxpr_text(gelu, x)
        jax.jvp(gelu, (x,), (x,))  # forward mode works on the XLA form
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        og.onednn_gelu(x.astype(jnp.int32))
    # Python scalars and lists, as jax.nn.gelu takes them.
    np.testing.assert_allclose(gelu(1.0), jax.nn.gelu(1.0, approximate=False), rtol=1e-6)
    np.testing.assert_allclose(gelu([0.5, -2.0]), _numpy_gelu([0.5, -2.0], False), rtol=1e-6)
    several_devices(monkeypatch)
    assert "ffi_call" not in jaxpr_text(gelu, x)
