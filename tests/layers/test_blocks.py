"""Residual blocks: residual exactly where it belongs, stride placement, SE gating, shapes."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.layers import (
    BasicBlock,
    Bottleneck,
    ConvNormAct,
    DepthwiseSeparable,
    FusedMBConv,
    GroupNorm,
    InvertedResidual,
    MBConv,
    SqueezeExcite,
    StdConv,
)


def _x(shape=(2, 8, 8, 16), seed=0):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _init(block, x):
    return block.init(jax.random.key(0), x)


# (block, input channels, expect a residual connection)
RESIDUAL_CASES = [
    (MBConv(16, expand_ratio=6, strides=1, se_ratio=0.25), 16, True),
    (MBConv(16, expand_ratio=1, kernel_size=5, strides=1), 16, True),
    (MBConv(16, expand_ratio=6, strides=2, se_ratio=0.25), 16, False),
    (MBConv(24, expand_ratio=6, strides=1), 16, False),
    (InvertedResidual(16, 6, 1), 16, True),
    (InvertedResidual(16, 1, 2), 16, False),
    (FusedMBConv(16, expand_ratio=4, strides=1), 16, True),
    (FusedMBConv(16, expand_ratio=1, strides=1), 16, True),
    (FusedMBConv(32, expand_ratio=4, strides=1), 16, False),
    (FusedMBConv(16, expand_ratio=4, strides=2), 16, False),
]


@pytest.mark.parametrize("block,c_in,residual", RESIDUAL_CASES)
def test_mbconv_residual_exactly_when_stride1_and_same_channels(block, c_in, residual):
    # With the last norm's scale at zero the branch outputs exactly zero, so the block is the
    # identity if and only if it has a residual connection.
    block = block.clone(zero_init_last=True)
    x = _x((2, 8, 8, c_in))
    variables = _init(block, x)
    y = block.apply(variables, x)
    if residual:
        chex.assert_trees_all_equal(y, x)
    else:
        chex.assert_trees_all_equal(y, jnp.zeros_like(y))
    # With a normal init the branch is non-zero: the output is not the input (nor zero).
    y2 = block.clone(zero_init_last=False).apply(_init(block.clone(zero_init_last=False), x), x)
    assert np.abs(np.asarray(y2)).max() > 1e-3
    if residual:
        assert not np.allclose(y2, x)


def test_mbconv_drop_path_drops_the_branch_in_training():
    block = MBConv(16, expand_ratio=4, drop_path_rate=1.0)
    x = _x()
    variables = _init(block, x)
    y, _ = block.apply(variables, x, train=True, rngs={"drop_path": jax.random.key(0)}, mutable=["batch_stats"])
    chex.assert_trees_all_equal(y, x)  # whole branch dropped -> identity
    assert not np.allclose(block.apply(variables, x), x)  # eval keeps the branch


def test_mbconv_structure_and_se_width():
    block = MBConv(24, expand_ratio=6, kernel_size=5, strides=2, se_ratio=0.25)
    x = _x((1, 9, 9, 16))
    p = _init(block, x)["params"]
    chex.assert_shape(p["expand"]["conv"]["kernel"], (1, 1, 16, 96))
    chex.assert_shape(p["dw"]["conv"]["kernel"], (5, 5, 1, 96))  # depthwise
    chex.assert_shape(p["se"]["reduce"]["kernel"], (1, 1, 96, 4))  # int(16 * 0.25): block input
    chex.assert_shape(p["project"]["conv"]["kernel"], (1, 1, 96, 24))
    assert "bias" not in p["expand"]["conv"] and "bias" not in p["project"]["conv"]
    chex.assert_shape(block.apply(_init(block, x), x), (1, 5, 5, 24))  # SAME: ceil(9 / 2)
    # expand_ratio 1: no expansion conv
    assert "expand" not in _init(MBConv(16, expand_ratio=1), _x())["params"]


def test_squeeze_excite_matches_numpy_and_gates_in_unit_interval():
    x = jnp.abs(_x((2, 5, 5, 8), 1)) + 0.1
    se = SqueezeExcite(2)
    variables = _init(se, x)
    y = np.asarray(se.apply(variables, x))
    gate = y / np.asarray(x)
    assert np.all((gate > 0) & (gate < 1))
    np.testing.assert_allclose(gate, gate[:, :1, :1, :].repeat(5, 1).repeat(5, 2), rtol=1e-5)  # per channel
    p = jax.tree.map(np.asarray, variables["params"])
    s = np.asarray(x).mean((1, 2))
    h = np.maximum(s @ p["reduce"]["kernel"][0, 0] + p["reduce"]["bias"], 0)
    ref_gate = 1 / (1 + np.exp(-(h @ p["expand"]["kernel"][0, 0] + p["expand"]["bias"])))
    np.testing.assert_allclose(gate[:, 0, 0, :], ref_gate, rtol=1e-5)


@pytest.mark.parametrize("block_cls,features,strides,c_in,out_c,projection", [
    (BasicBlock, 16, 1, 16, 16, False),
    (BasicBlock, 32, 2, 16, 32, True),
    (Bottleneck, 4, 1, 16, 16, False),
    (Bottleneck, 8, 1, 16, 32, True),
    (Bottleneck, 8, 2, 32, 32, True),
])
def test_resnet_blocks_shortcut_and_shapes(block_cls, features, strides, c_in, out_c, projection):
    block = block_cls(features, strides=strides)
    x = _x((2, 8, 8, c_in))
    variables = _init(block, x)
    assert ("downsample_conv" in variables["params"]) == projection
    y = block.apply(variables, x)
    chex.assert_shape(y, (2, 8 // strides, 8 // strides, out_c))
    assert np.all(np.asarray(y) >= 0)  # ends with ReLU
    # zero-initialized last norm: out = relu(shortcut(x)); identity shortcut -> relu(x)
    zblock = block.clone(zero_init_last=True)
    yz = zblock.apply(_init(zblock, x), x)
    if not projection:
        chex.assert_trees_all_equal(yz, jax.nn.relu(x))


def test_bottleneck_v15_stride_on_3x3():
    block = Bottleneck(8, strides=2)
    x = _x((1, 8, 8, 16))
    variables = _init(block, x)
    _, inter = block.apply(variables, x, capture_intermediates=True, mutable=["intermediates"])
    shape = lambda name: inter["intermediates"][name]["__call__"][0].shape  # noqa: E731
    assert shape("conv1") == (1, 8, 8, 8)  # 1x1 keeps the resolution
    assert shape("conv2") == (1, 4, 4, 8)  # the 3x3 strides
    assert shape("conv3") == (1, 4, 4, 32)


def test_bottleneck_with_stdconv_groupnorm_is_the_vit_hybrid_unit():
    block = Bottleneck(8, strides=2, conv=StdConv, norm=functools.partial(GroupNorm, num_groups=4),
                       padding="SAME", zero_init_last=True)
    x = _x((1, 8, 8, 16))
    variables = _init(block, x)
    assert "batch_stats" not in variables
    assert set(variables["params"]["norm3"]) == {"scale", "bias"}
    chex.assert_trees_all_equal(variables["params"]["norm3"]["scale"], jnp.zeros(32))
    chex.assert_shape(block.apply(variables, x), (1, 4, 4, 32))


def test_depthwise_separable():
    x = _x()
    block = DepthwiseSeparable(16, se_ratio=0.25)
    variables = _init(block, x)
    chex.assert_shape(variables["params"]["dw"]["conv"]["kernel"], (3, 3, 1, 16))
    chex.assert_shape(variables["params"]["pw"]["conv"]["kernel"], (1, 1, 16, 16))
    chex.assert_shape(block.apply(variables, x), x.shape)
    chex.assert_shape(DepthwiseSeparable(32, strides=2).apply(_init(DepthwiseSeparable(32, strides=2), x), x),
                      (2, 4, 4, 32))


def test_blocks_bf16_activations_float32_params():
    # dtypes are decided at trace time: check them abstractly (no compute)
    x = jax.ShapeDtypeStruct((2, 8, 8, 16), jnp.float32)
    for block in (MBConv(16, se_ratio=0.25, dtype=jnp.bfloat16), Bottleneck(4, dtype=jnp.bfloat16),
                  BasicBlock(16, dtype=jnp.bfloat16), ConvNormAct(8, dtype=jnp.bfloat16),
                  FusedMBConv(16, dtype=jnp.bfloat16), DepthwiseSeparable(16, dtype=jnp.bfloat16)):
        variables = jax.eval_shape(block.init, jax.random.key(0), x)
        y, state = jax.eval_shape(
            lambda v, x, b=block: b.apply(v, x, train=True, mutable=["batch_stats"]), variables, x)
        assert y.dtype == jnp.bfloat16, type(block).__name__
        assert all(v.dtype == jnp.float32 for v in jax.tree.leaves((variables, state)))
