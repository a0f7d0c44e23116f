"""EfficientFormer L1/L3/L7: exact timm parameter counts and feature levels, the attention-bias
index, the reference's initialization, the averaged distillation head, the fixed input size, a
tiny forward, features_only. Reference parity: tests/convert/fixtures/efficientformer_timm.npz
and efficientformer_all_vit_timm.npz (timm EfficientFormer at tiny widths, with the flattening
inside and before the last stage)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxvision import models
from jaxvision.models.efficientformer import attention_bias_index
from tests.models.family_checks import check_forward, check_levels, levels_of, param_count

# timm 1.0.31 efficientformer_{l1,l3,l7}() at 1000 classes (head and head_dist): sum of
# parameter numels, and feature_info (num_chs, reduction) (counted in /work/torchvenv).
TIMM = {
    "efficientformer_l1": 12_289_928,
    "efficientformer_l3": 31_406_000,
    "efficientformer_l7": 82_229_328,
}
TIMM_LEVELS_L3 = [(4, 64), (8, 128), (16, 320), (32, 512)]
# widths/depths shrunk; two of the three downsamplings kept, so the 7x7 attention grid is at 112 px
TINY = {"config": {"widths": (8, 8, 16, 16), "depths": (1, 1, 1, 2), "num_vit": 1,
                   "downsamples": (False, False, True, True)}}
SIZE = 112


@pytest.mark.parametrize("name", sorted(TIMM))
def test_parameter_count(name):
    assert param_count(name) == TIMM[name]


def test_feature_levels_and_listing():
    assert levels_of("efficientformer_l3") == TIMM_LEVELS_L3
    assert set(TIMM) <= set(models.list_models())


def test_attention_bias_index_is_the_absolute_offset():
    # 2x2 grid, tokens (0,0) (0,1) (1,0) (1,1): index |dy| * 2 + |dx|
    np.testing.assert_array_equal(attention_bias_index(2),
                                  [[0, 1, 2, 3], [1, 0, 3, 2], [2, 3, 0, 1], [3, 2, 1, 0]])
    idx = attention_bias_index(7)
    assert idx.shape == (49, 49) and idx[0, 48] == 6 * 7 + 6 and idx[48, 0] == 48


def _variables(model):
    # the 'rbg' generator: XLA compiles its random bits in a fraction of threefry's time
    return jax.jit(model.init)(jax.random.key(0, impl="rbg"), jnp.zeros((1, SIZE, SIZE, 3)))


def test_initialization_and_averaged_heads():
    model = models.create("efficientformer_l1", num_classes=5, **TINY)
    variables = _variables(model)
    flat = traverse_util.flatten_dict(variables["params"], sep="/")
    assert np.all(flat["stages_3_1/layer_scale1"] == np.float32(1e-5))
    assert np.all(flat["stages_0_0/layer_scale2"] == np.float32(1e-5))
    assert not np.asarray(flat["stages_3_1/attn/attention_biases"]).any()
    qkv = np.asarray(flat["stages_3_1/attn/qkv/kernel"])  # timm trunc_normal_(std=.02)
    assert qkv.shape == (16, 8 * (32 + 32 + 128)) and abs(qkv.std() - 0.02) < 0.002
    # convs keep PyTorch's default: kernel and bias U(+-1/sqrt(fan_in)), fan_in = 3 * 3 * 3
    stem, bias = np.asarray(flat["stem_conv1/kernel"]), np.asarray(flat["stem_conv1/bias"])
    bound = 1 / np.sqrt(27)
    assert np.abs(stem).max() <= bound and np.abs(stem).max() > 0.8 * bound
    assert np.abs(bias).max() <= bound and bias.any()
    # logits are the mean of the class and distillation heads on the token mean after the norm
    x = jax.random.normal(jax.random.key(1), (2, SIZE, SIZE, 3))
    logits, state = jax.jit(lambda v, x: model.apply(
        v, x, capture_intermediates=lambda mdl, _: mdl.name == "norm"))(variables, x)
    f = np.asarray(state["intermediates"]["norm"]["__call__"][0], np.float64).mean(axis=1)
    params = variables["params"]
    head = lambda n: f @ np.asarray(params[n]["kernel"]) + np.asarray(params[n]["bias"])  # noqa: E731
    np.testing.assert_allclose(logits, (head("head") + head("head_dist")) / 2, rtol=1e-5, atol=1e-6)


def test_input_size_must_give_the_attention_grid():
    model = models.create("efficientformer_l1")
    with pytest.raises(ValueError, match=r"7x7 token grid.*feed 224x224 px"):
        jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x),
                       jax.ShapeDtypeStruct((1, 256, 256, 3), jnp.float32))


def test_tiny_forward_and_drop_path():
    model = models.create("efficientformer_l1", num_classes=5, drop_path_rate=0.5, **TINY)
    check_forward(model, SIZE, 5, has_batch_stats=True)


def test_features_only():
    check_levels("efficientformer_l1", TINY, SIZE, [(4, 8), (4, 8), (8, 16), (16, 16)])
