"""FastViT T8/T12/SA12 (train-time form): exact timm parameter counts, the parts each size has,
timm's initialization, a tiny forward with stochastic depth, feature levels. Logit parity with
timm: tests/convert/fixtures/fastvit_timm.npz (RepMixer stages + RepCPE + attention)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxvision import models
from jaxvision.models.fastvit_reparam import reparameterize
from tests.models.family_checks import (
    check_forward,
    check_levels,
    levels_of,
    param_count,
    random_variables,
)

# timm 1.0.31: sum(p.numel() for p in timm.create_model(name).parameters()) at 1000 classes,
# counted in /work/torchvenv (train-time form, BatchNorm statistics are buffers, not counted).
TIMM_COUNTS = {"fastvit_t8": 4_026_232, "fastvit_t12": 7_553_704, "fastvit_sa12": 11_580_968}
# The same after timm.utils.model.reparameterize_model (timm inference form).
TIMM_FUSED_COUNTS = {"fastvit_t8": 3_996_040, "fastvit_t12": 7_508_840, "fastvit_sa12": 11_545_320}
TINY = dict(depths=(1, 1, 1, 1), embed_dims=(8, 16, 16, 32), mlp_ratio=3.0,
            token_mixers=("repmixer",) * 3 + ("attention",), drop_path_rate=0.5)


@pytest.mark.parametrize("name", sorted(TIMM_COUNTS))
def test_parameter_count_equals_timm(name):
    assert param_count(name) == TIMM_COUNTS[name]


def _paths(name, **kw):
    v = models.abstract_variables(models.create(name, **kw), (1, 64, 64, 3))["params"]
    return traverse_util.flatten_dict(v, sep="/")


def test_sa12_has_positional_encoding_and_attention_in_its_last_stage_only():
    sa, t = _paths("fastvit_sa12"), _paths("fastvit_t12")
    assert sa["stage4_pos_emb/kernel"].shape == (7, 7, 1, 512)  # depthwise RepCPE
    assert sa["stage4_block1/token_mixer/qkv/kernel"].shape == (512, 3 * 512)
    assert "stage4_block1/token_mixer/qkv/bias" not in sa
    assert "stage3_block1/token_mixer/mixer/conv_kxk_0/conv/kernel" in sa
    assert not any("pos_emb" in k or "qkv" in k for k in t)
    # Head: a grouped 3x3 MobileOne block doubling the width, with squeeze-excite (512*2/16).
    assert t["final_conv/conv_kxk_0/conv/kernel"].shape == (3, 3, 1, 1024)
    assert t["final_conv/se/reduce/kernel"].shape == (1, 1, 1024, 64)


def test_initialization_follows_timm():
    # Blocks initialized alone: a whole model's init compiles too many RNG calls for CI.
    from jaxvision.models.fastvit import FastViTBlock, MobileOneBlock

    def init(module, shape):
        v = jax.jit(module.init)(jax.random.key(0), jnp.zeros(shape))["params"]
        return traverse_util.flatten_dict(v, sep="/")

    block = init(FastViTBlock("attention", 3.0), (1, 4, 4, 32))
    assert np.allclose(block["layer_scale_1"], 1e-5) and np.allclose(block["layer_scale_2"], 1e-5)
    # trunc_normal(0.02) on linear layers and ConvMlp convs (cut at 2 std), biases 0.
    for k in ("token_mixer/qkv/kernel", "mlp/fc1/kernel"):
        assert np.abs(block[k]).max() <= 0.04 + 1e-7 and 0.01 < block[k].std() < 0.03, k
    assert not np.any(block["mlp/fc1/bias"]) and not np.any(block["token_mixer/proj/bias"])
    # PyTorch's default conv init elsewhere: U(+-1/sqrt(fan_in)), fan_in = 3 * 3 * 3 (stem conv).
    stem = init(MobileOneBlock(16, 3, 2), (1, 8, 8, 3))["conv_kxk_0/conv/kernel"]
    assert np.abs(stem).max() <= 1 / np.sqrt(27) and stem.std() > 0.8 / np.sqrt(3 * 27)
    assert sum("layer_scale" in k for k in _paths("fastvit_sa12", **TINY)) == 3 * 2 + 2


def test_tiny_forward_and_stochastic_depth():
    check_forward(models.create("fastvit_sa12", num_classes=10, **TINY), 64, 10, has_batch_stats=True)


def test_feature_levels():
    # timm fastvit_*.feature_info: the four stages, reductions 4, 8, 16, 32.
    assert levels_of("fastvit_t8") == [(4, 48), (8, 96), (16, 192), (32, 384)]
    assert levels_of("fastvit_sa12") == [(4, 64), (8, 128), (16, 256), (32, 512)]
    check_levels("fastvit_sa12", TINY, 64, [(4, 8), (8, 16), (16, 16), (32, 32)])


@pytest.mark.parametrize("name", sorted(TIMM_FUSED_COUNTS))
def test_inference_form_parameter_count_equals_timm_reparameterized(name):
    model = models.create(name, inference_mode=True)
    shapes = models.abstract_variables(model, models.input_shape(name))
    assert models.count_params(shapes["params"]) == TIMM_FUSED_COUNTS[name]


def test_reparameterize_keeps_the_logits():
    x = jax.random.normal(jax.random.key(0), (2, 64, 64, 3))
    train_form = models.create("fastvit_sa12", num_classes=10, **TINY)
    fused_form = models.create("fastvit_sa12", num_classes=10, inference_mode=True, **TINY)
    variables = random_variables(train_form, x)  # BatchNorm statistics far from 0 / 1
    fused = reparameterize(variables)
    want = jax.eval_shape(lambda: fused_form.init(jax.random.key(0), x))
    assert jax.tree.structure(fused) == jax.tree.structure(want)
    assert jax.tree.map(np.shape, fused) == jax.tree.map(lambda s: s.shape, want)
    ref = np.asarray(jax.jit(train_form.apply)(variables, x))
    got = np.asarray(jax.jit(fused_form.apply)(fused, x))
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 1e-5
    assert (got.argmax(-1) == ref.argmax(-1)).all()
    with pytest.raises(ValueError, match="reparameterized twice"):
        reparameterize(fused)
