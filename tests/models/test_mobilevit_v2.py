"""MobileViTv2 050..200: exact timm parameter counts and feature levels, the reference's
initialization, separable attention against numpy, aligned-corner resizing against
``scipy.ndimage.map_coordinates``, a tiny forward, features_only. Reference parity:
tests/convert/fixtures/mobilevitv2_timm.npz (timm ByobNet with MobileViTv2 blocks at tiny widths,
66 px so that the odd-size resizing runs)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from scipy import ndimage

from jaxvision import models
from jaxvision.models.mobilevit_v2 import LinearSelfAttention, align_corners_resize
from tests.models.family_checks import check_forward, check_levels, levels_of, param_count

# timm 1.0.31 mobilevitv2_{050..200}() at 1000 classes: sum of parameter numels, and
# feature_info (num_chs, reduction) (counted in /work/torchvenv).
TIMM = {
    "mobilevitv2_050": 1_370_593,
    "mobilevitv2_075": 2_866_009,
    "mobilevitv2_100": 4_901_841,
    "mobilevitv2_125": 7_478_089,
    "mobilevitv2_150": 10_594_753,
    "mobilevitv2_175": 14_251_833,
    "mobilevitv2_200": 18_449_329,
}
TIMM_LEVELS_075 = [(2, 48), (4, 96), (8, 192), (16, 288), (32, 384)]
# three stages (kept small: compiling is what these tests spend their time on)
TINY = {"config": {"stem": 8, "expand": 2.0, "transformer_ratio": 0.5,
                   "stages": [["mv2", 8, 1, 1, None], ["vit", 16, 1, 2, 1], ["vit", 24, 1, 2, 1]]}}


@pytest.mark.parametrize("name", sorted(TIMM))
def test_parameter_count(name):
    assert param_count(name) == TIMM[name]


def test_feature_levels_and_listing():
    assert levels_of("mobilevitv2_075") == TIMM_LEVELS_075
    assert set(TIMM) <= set(models.list_models())
    assert models.model_info("mobilevitv2_100")["default_resolution"] == 256


def test_separable_attention_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, 6, 8)).astype(np.float32)  # (N, P pixels, M patches, d)
    layer = LinearSelfAttention()
    variables = layer.init(jax.random.key(0), x)
    p = variables["params"]
    qkv = x @ np.asarray(p["qkv"]["kernel"]) + np.asarray(p["qkv"]["bias"])
    q, k, v = qkv[..., :1], qkv[..., 1:9], qkv[..., 9:]
    scores = np.exp(q - q.max(2, keepdims=True))
    scores /= scores.sum(2, keepdims=True)  # softmax over the patches
    context = (k * scores).sum(2, keepdims=True)
    want = (np.maximum(v, 0) * context) @ np.asarray(p["out_proj"]["kernel"]) + np.asarray(
        p["out_proj"]["bias"])
    np.testing.assert_allclose(layer.apply(variables, x), want, rtol=1e-5, atol=1e-5)


def test_align_corners_resize_matches_scipy():
    x = np.random.default_rng(1).normal(size=(1, 5, 3, 2)).astype(np.float32)
    got = np.asarray(align_corners_resize(jnp.asarray(x), (6, 4)))
    rows = np.arange(6) * (5 - 1) / (6 - 1)
    cols = np.arange(4) * (3 - 1) / (4 - 1)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    for c in range(2):
        want = ndimage.map_coordinates(x[0, :, :, c].astype(np.float64), [rr, cc], order=1)
        np.testing.assert_allclose(got[0, :, :, c], want, rtol=1e-5, atol=1e-6)


def test_initialization_is_the_references():
    model = models.create("mobilevitv2_050", num_classes=5, **TINY)
    x = jnp.zeros((1, 16, 16, 3))
    # the 'rbg' generator: XLA compiles its random bits in a fraction of threefry's time
    variables = jax.jit(model.init)(jax.random.key(0, impl="rbg"), x)
    flat = traverse_util.flatten_dict(variables["params"], sep="/")
    # timm ByobNet: conv N(0, 2 / (k * k * C_out / groups)); depthwise 3x3: std sqrt(2 / 9)
    dw = np.asarray(flat["stages_2_1/conv_kxk/conv/kernel"])
    assert dw.shape == (3, 3, 1, 24) and abs(dw.std() - np.sqrt(2 / 9)) < 0.08
    qkv = np.asarray(flat["stages_2_1/transformer_0/attn/qkv/kernel"])  # 1x1 conv, fan_out 1 + 2d
    assert qkv.shape == (16, 33) and abs(qkv.std() - np.sqrt(2 / 33)) < 0.05
    # the residual inverted bottleneck's last BatchNorm is zero (zero_init_last); others are one
    assert np.all(np.asarray(flat["stages_0_0/project/norm/scale"]) == 0)
    assert np.all(np.asarray(flat["stages_1_0/project/norm/scale"]) == 1)
    assert np.all(np.asarray(flat["stages_1_1/transformer_0/norm1/scale"]) == 1)
    head = np.asarray(flat["head/kernel"])
    assert abs(head.std() - 0.01) < 0.003 and not np.asarray(flat["head/bias"]).any()


def test_tiny_forward_drop_path_and_odd_sizes():
    model = models.create("mobilevitv2_050", num_classes=5, drop_path_rate=0.5, **TINY)
    check_forward(model, 32, 5, has_batch_stats=True)
    # 18 px: the 5x5 and 3x3 maps entering the v2 blocks are resized up to multiples of the 2x2
    # patches and stay so
    features = models.create("mobilevitv2_050", features_only=True, **TINY)
    maps = jax.eval_shape(lambda x: features.init_with_output(jax.random.key(0), x)[0],
                          jax.ShapeDtypeStruct((1, 18, 18, 3), jnp.float32))
    assert [m.shape[1] for m in maps] == [9, 6, 4]


def test_features_only():
    check_levels("mobilevitv2_050", TINY, 32, [(2, 8), (4, 16), (8, 24)])
