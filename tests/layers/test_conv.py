"""Conv wrapper against tf.nn.conv2d ("SAME") and a numpy reference (symmetric padding, groups,
dilation, depthwise, weight standardization)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.layers import Conv, DepthwiseConv, StdConv, conv_padding, weight_standardize


@pytest.fixture(scope="module")
def tf():
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    return tf


def np_conv(x, w, stride=1, pad=((0, 0), (0, 0)), dilation=1, groups=1):
    """Direct cross-correlation in float64: x (N,H,W,C), w (kh,kw,C/groups,F)."""
    x = np.pad(np.asarray(x, np.float64), ((0, 0), *pad, (0, 0)))
    w = np.asarray(w, np.float64)
    n, h, wd, c = x.shape
    kh, kw, cg, f = w.shape
    ekh, ekw = (kh - 1) * dilation + 1, (kw - 1) * dilation + 1
    oh, ow = (h - ekh) // stride + 1, (wd - ekw) // stride + 1
    fg = f // groups
    out = np.zeros((n, oh, ow, f))
    for i in range(oh):
        for j in range(ow):
            patch = x[
                :,
                i * stride : i * stride + ekh : dilation,
                j * stride : j * stride + ekw : dilation,
                :,
            ]
            for g in range(groups):
                p = patch[..., g * cg : (g + 1) * cg]
                out[:, i, j, g * fg : (g + 1) * fg] = np.einsum(
                    "nhwc,hwcf->nf", p, w[..., g * fg : (g + 1) * fg]
                )
    return out


def _init_apply(module, x):
    variables = module.init(jax.random.key(1), x)
    return variables, module.apply(variables, x)


@pytest.mark.parametrize("size", [7, 8])
@pytest.mark.parametrize("kernel", [1, 3, 4])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_same_padding_matches_tf(tf, size, kernel, stride):
    x = np.random.default_rng(0).standard_normal((2, size, size + 1, 3)).astype(np.float32)
    variables, y = _init_apply(Conv(5, kernel, stride, padding="SAME"), x)
    k, b = variables["params"]["kernel"], variables["params"]["bias"]
    ref = tf.nn.conv2d(x, np.asarray(k), strides=stride, padding="SAME").numpy() + np.asarray(b)
    chex.assert_shape(y, ref.shape)
    chex.assert_trees_all_close(y, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("size", [7, 8])
def test_same_padding_dilated_matches_tf(tf, size):
    x = np.random.default_rng(1).standard_normal((1, size, size, 2)).astype(np.float32)
    variables, y = _init_apply(Conv(3, 3, dilation=2, use_bias=False), x)
    ref = tf.nn.conv2d(
        x, np.asarray(variables["params"]["kernel"]), strides=1, padding="SAME", dilations=2
    )
    chex.assert_trees_all_close(y, ref.numpy(), atol=1e-4, rtol=1e-4)


def test_same_padding_is_asymmetric_like_tf():
    # 8 wide, k=3, stride 2: TF pads 0 before and 1 after (PyTorch padding=1 would pad 1 and 1).
    assert conv_padding("SAME", (3, 3)) == "SAME"
    x = np.random.default_rng(2).standard_normal((1, 8, 8, 1)).astype(np.float32)
    variables, y = _init_apply(Conv(1, 3, 2, padding="SAME", use_bias=False), x)
    w = variables["params"]["kernel"]
    chex.assert_trees_all_close(y, np_conv(x, w, 2, ((0, 1), (0, 1))), atol=1e-5)
    assert not np.allclose(y, np_conv(x, w, 2, ((1, 1), (1, 1))), atol=1e-3)


@pytest.mark.parametrize(
    "padding,kernel,stride,dilation,groups,expect_pad",
    [
        ("SYMMETRIC", 3, 1, 1, 1, 1),
        ("SYMMETRIC", 3, 2, 1, 2, 1),
        ("SYMMETRIC", 5, 2, 1, 1, 2),
        ("SYMMETRIC", 3, 1, 2, 1, 2),
        (2, 3, 2, 1, 4, 2),
        ((1, 1), 3, 3, 1, 1, 1),
        ("VALID", 3, 2, 1, 1, 0),
    ],
)
def test_symmetric_padding_groups_dilation_match_numpy(
    padding, kernel, stride, dilation, groups, expect_pad
):
    x = np.random.default_rng(3).standard_normal((2, 9, 8, 4)).astype(np.float32)
    conv = Conv(8, kernel, stride, padding=padding, dilation=dilation, groups=groups)
    variables, y = _init_apply(conv, x)
    p = variables["params"]
    chex.assert_shape(p["kernel"], (kernel, kernel, 4 // groups, 8))
    ref = np_conv(x, p["kernel"], stride, ((expect_pad,) * 2,) * 2, dilation, groups) + np.asarray(
        p["bias"]
    )
    chex.assert_trees_all_close(y, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("multiplier,stride", [(1, 1), (2, 2)])
def test_depthwise_matches_per_channel_numpy(multiplier, stride):
    x = np.random.default_rng(4).standard_normal((2, 7, 7, 3)).astype(np.float32)
    variables, y = _init_apply(
        DepthwiseConv(3, stride, padding=1, channel_multiplier=multiplier), x
    )
    w = np.asarray(variables["params"]["kernel"])  # (3, 3, 1, 3 * m)
    chex.assert_shape(w, (3, 3, 1, 3 * multiplier))
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    for c in range(3):
        for j in range(multiplier):
            o = c * multiplier + j
            for i in range(y.shape[1]):
                for k in range(y.shape[2]):
                    patch = xp[:, i * stride : i * stride + 3, k * stride : k * stride + 3, c]
                    np.testing.assert_allclose(
                        y[:, i, k, o], (patch * w[:, :, 0, o]).sum((1, 2)), atol=1e-5
                    )


def test_stdconv_standardizes_kernel_per_output_channel():
    x = np.random.default_rng(5).standard_normal((2, 6, 6, 4)).astype(np.float32)
    variables, y = _init_apply(StdConv(6, 3, use_bias=False, eps=1e-5), x)
    w = np.asarray(variables["params"]["kernel"], np.float64)
    w_std = (w - w.mean((0, 1, 2))) / (w.std((0, 1, 2)) + 1e-5)
    chex.assert_trees_all_close(y, np_conv(x, w_std, 1, ((1, 1), (1, 1))), atol=1e-4, rtol=1e-4)
    # Invariant to a per-channel affine change of the raw kernel (up to eps / std ~ 1e-4).
    shifted = {"params": {"kernel": variables["params"]["kernel"] * 3.0 + 0.7}}
    chex.assert_trees_all_close(StdConv(6, 3, use_bias=False).apply(shifted, x), y, rtol=1e-3, atol=1e-3)
    ws = np.asarray(weight_standardize(jnp.asarray(w)))
    np.testing.assert_allclose(ws.std((0, 1, 2)), 1.0, atol=1e-4)


def test_bf16_compute_float32_params():
    x = jnp.ones((1, 8, 8, 3), jnp.float32)
    variables, y = _init_apply(Conv(4, 3, dtype=jnp.bfloat16), x)
    assert y.dtype == jnp.bfloat16
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))


def test_clear_errors():
    conv = Conv(4, 3)
    with pytest.raises(ValueError, match="NHWC"):
        conv.init(jax.random.key(0), jnp.ones((8, 8, 3)))
    with pytest.raises(ValueError, match="groups=2"):
        Conv(4, 3, groups=2).init(jax.random.key(0), jnp.ones((1, 8, 8, 3)))
    with pytest.raises(ValueError, match="unknown padding"):
        Conv(4, 3, padding="same-ish").init(jax.random.key(0), jnp.ones((1, 8, 8, 3)))
