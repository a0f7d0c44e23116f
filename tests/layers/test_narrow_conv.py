"""jaxvision.layers.narrow_conv (1-4 input channels on the CPU) gives what XLA's convolution
gives: values and gradients w.r.t. input and kernel, over kernel sizes, strides, dilations,
paddings, channel counts and dtypes, on both weight-gradient forms."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.layers import conv2d
from tests.layers.test_lowering import _check_against_xla

narrow_conv = importlib.import_module("jaxvision.layers.narrow_conv")  # the module, not the function


@pytest.mark.parametrize("dtype,rtol", [(jnp.float32, 1e-5), (jnp.bfloat16, 2e-2)])
@pytest.mark.parametrize("stack_bytes", [narrow_conv.STACK_BYTES, 0])  # product form / XLA's dw
@pytest.mark.parametrize(
    "k,stride,dilation,padding,cin,size",
    [
        (5, 1, 1, "VALID", 1, 12),  # LeNet-5's conv1
        (3, 2, 1, "SAME", 3, 11),  # EfficientNet / MobileNet stem, odd size
        (5, 2, 1, [(2, 2), (2, 2)], 1, 14),  # PyTorch-style padding, strided
        (3, 1, 2, "SAME", 4, 9),  # dilated, RGBA
        (2, 3, 1, [(1, 0), (0, 2)], 2, 10),  # asymmetric padding, stride > kernel
    ],
)
def test_narrow_conv_matches_xla(monkeypatch, stack_bytes, k, stride, dilation, padding, cin,
                                 size, dtype, rtol):
    monkeypatch.setattr(narrow_conv, "STACK_BYTES", stack_bytes)
    rng = np.random.default_rng(k * 10 + cin)
    x = jnp.asarray(rng.normal(size=(2, size, size + 1, cin)), dtype)
    w = jnp.asarray(rng.normal(size=(k, k, cin, 5)), dtype)
    _check_against_xla(x, w, rtol, strides=(stride, stride), padding=padding,
                       dilation=(dilation, dilation))


def test_narrow_conv_serves_few_channel_inputs_only():
    def ops(cin, groups=1):
        x, w = jnp.ones((1, 8, 8, cin)), jnp.ones((3, 3, cin // groups, 4))
        return str(jax.make_jaxpr(lambda x, w: conv2d(x, w, groups=groups, impl="cpu"))(x, w))

    assert "conv_general_dilated" not in ops(1).split("bwd")[0]  # forward: fused taps
    assert "custom_vjp_call" in ops(3)
    assert "custom_vjp_call" not in ops(5)  # 5+ channels: XLA's convolution
    x, w = jnp.ones((1, 16, 16, 3)), jnp.ones((7, 7, 3, 4))  # ResNet's stem: 147 terms
    assert not narrow_conv.narrow_conv_applies(x, w, 1)
    assert "custom_vjp_call" not in ops(4, groups=2)  # grouped: XLA's convolution
    x, w = jnp.ones((1, 8, 8, 3), jnp.int32), jnp.ones((3, 3, 3, 4), jnp.int32)
    assert not narrow_conv.narrow_conv_applies(x, w, 1)  # integer images stay XLA's


def test_float64_stays_float64():
    # x64 users (finite-difference gradient checks) must get float64 sums, not float32 ones.
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.normal(size=(2, 8, 8, 3)), jnp.float64)
        w = jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float64)
        _check_against_xla(x, w, 1e-12, padding="SAME")


@pytest.mark.parametrize("xs,ws,stride,padding", [
    ((1, 3, 3, 1), (5, 5, 1, 8), 2, "VALID"),  # the kernel does not fit: empty output
    ((1, 1, 1, 1), (3, 3, 1, 2), 1, [(4, 4), (0, 0)]),  # empty along one axis only
    ((1, 5, 5, 0), (3, 3, 0, 2), 1, "SAME"),  # no input channels
])
def test_empty_outputs_and_inputs_are_what_xla_gives(xs, ws, stride, padding):
    x, w = jnp.ones(xs), jnp.ones(ws)
    kw = dict(strides=(stride, stride), padding=padding)
    np.testing.assert_array_equal(conv2d(x, w, impl="cpu", **kw), conv2d(x, w, impl="xla", **kw))


def test_mixed_dtypes_are_refused_in_the_forward_pass_as_xla_does():
    x, w = jnp.ones((1, 8, 8, 3), jnp.bfloat16), jnp.ones((3, 3, 3, 4), jnp.float32)
    for impl in ("cpu", "xla"):
        with pytest.raises(TypeError, match="same dtypes"):
            conv2d(x, w, impl=impl)
