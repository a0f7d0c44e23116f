"""ConvNeXt tiny/small/base/large: exact torchvision parameter counts, the reference's
initialization, a tiny forward, features_only. Reference parity: tests/convert/fixtures/
convnext.npz (torchvision ConvNeXt at tiny widths)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxvision import models

# torchvision 0.29 convnext_{tiny,small,base,large}(weights=None), sum of parameter numels at
# 1000 classes (counted in /work/torchvenv); convnext_tiny also in
# /work/shared/reference/param_counts.json.
TORCHVISION = {
    "convnext_tiny": 28_589_128,
    "convnext_small": 50_223_688,
    "convnext_base": 88_591_464,
    "convnext_large": 197_767_336,
}
TINY = dict(dims=(8, 16, 24, 32), depths=(1, 2, 1, 1))


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_parameter_count(name):
    assert models.model_info(name)["params"] == TORCHVISION[name]


def test_feature_levels():
    info = models.feature_info("convnext_base")
    assert [(level["stride"], level["channels"]) for level in info] == [
        (4, 128), (8, 256), (16, 512), (32, 1024)]


def _batch():
    return jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)


def test_initialization_is_the_references():
    model = models.create("convnext_tiny", num_classes=5, **TINY)
    params = jax.jit(model.init)(jax.random.key(0), _batch())["params"]
    flat = traverse_util.flatten_dict(params, sep="/")
    assert np.all(flat["stage2_block1/layer_scale"] == np.float32(1e-6))
    kernels = np.concatenate([np.ravel(v) for k, v in flat.items() if k.endswith("kernel")])
    biases = np.concatenate([np.ravel(v) for k, v in flat.items() if k.endswith("/bias")
                             and "norm" not in k])
    # trunc_normal(std=0.02) cut at 2 std: sd 0.02 * 0.88 (the truncated normal's), |w| <= 0.04.
    assert abs(kernels.std() - 0.0176) < 0.002 and np.abs(kernels).max() <= 0.04 + 1e-6
    assert not biases.any()


def test_tiny_forward_and_drop_path():
    # layer scale 1 (not 1e-6) so that dropping a branch changes the logits visibly
    model = models.create("convnext_tiny", num_classes=5, drop_path_rate=0.5, layer_scale_init=1.0,
                          **TINY)
    x = _batch()
    variables = jax.jit(model.init)(jax.random.key(0), x)
    logits = jax.jit(model.apply)(variables, x)
    assert logits.shape == (2, 5) and bool(jnp.all(jnp.isfinite(logits)))
    train = jax.jit(lambda r: model.apply(variables, x, train=True, rngs={"drop_path": r,
                                                                         "dropout": r}))
    a, b = train(jax.random.key(1)), train(jax.random.key(2))
    assert not np.allclose(a, b)  # stochastic depth draws differ between keys
    np.testing.assert_allclose(jax.jit(model.apply)(variables, x), logits)  # eval: deterministic


def test_features_only_returns_stage_maps():
    model = models.create("convnext_tiny", features_only=True, out_indices=(0, 3), **TINY)
    x = _batch()
    variables = jax.jit(model.init)(jax.random.key(0), x)
    maps = jax.jit(model.apply)(variables, x)
    assert [m.shape for m in maps] == [(2, 8, 8, 8), (2, 1, 1, 32)]
