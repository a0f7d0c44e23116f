"""features_only: multi-scale NHWC maps of every family, their stride/channels in model_info,
the classifier's variables, and the maps checked against independent computations."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import models
from jaxvision.layers.transformer import stack_encoder_params
from jaxvision.models.features import level_ends

# A small member per family (eval_shape only: nothing is run); other families are represented by
# their first registered name, so that every family in the zoo is checked.
REPRESENTATIVES = {
    "lenet": "lenet5",
    "alexnet": "alexnet",
    "vgg": "vgg11_bn",
    "googlenet": "googlenet",
    "resnet": "resnet18",
    "densenet": "densenet121",
    "mobilenet_v2": "mobilenet_v2",
    "efficientnet": "efficientnet_b0",
    "vit": "vit_ti16",
    "hybrid": "hybrid_tiny_mnist",
    "mobilevit": "mobilevit_xxs",
}
# Strides and channels of well-known backbones (timm feature_info of resnet50, efficientnet_b0,
# mobilenetv2_100, densenet121; torchvision's googlenet stage outputs).
KNOWN = {
    "resnet50": [(2, 64), (4, 256), (8, 512), (16, 1024), (32, 2048)],
    "efficientnet_b0": [(2, 16), (4, 24), (8, 40), (16, 112), (32, 320)],
    "mobilenet_v2": [(2, 16), (4, 24), (8, 32), (16, 96), (32, 320)],
    "densenet121": [(2, 64), (4, 256), (8, 512), (16, 1024), (32, 1024)],
    "googlenet": [(2, 64), (4, 192), (8, 480), (16, 832), (32, 1024)],
}


def _family_members():
    """(family, model) for every family of the zoo (not the fakes other tests register)."""
    zoo = [f for f in models.list_families()
           if models.get_spec(models.list_models(f)[0]).builder.__module__.startswith("jaxvision.")]
    return sorted((f, REPRESENTATIVES.get(f) or models.list_models(f)[0]) for f in zoo)


@pytest.mark.parametrize("family,name", _family_members())
def test_feature_maps_match_feature_info(family, name):
    info = models.model_info(name)["feature_info"]
    assert len(info) >= 2, f"{family} exposes fewer than two levels"
    shape = models.input_shape(name, batch=2)
    model = models.create(name, features_only=True)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    maps = jax.eval_shape(lambda r, x: model.init_with_output(r, x)[0], jax.random.key(0), x)
    assert len(maps) == len(info)
    for level, m in zip(info, maps, strict=True):
        assert m.ndim == 4 and m.shape[0] == 2
        assert m.shape[-1] == level["channels"] == level["num_chs"]
        assert level["stride"] == level["reduction"]
        if name in ("lenet5", "alexnet"):  # unpadded convs shrink maps a little below H / stride
            assert level["stride"] / 2 < shape[1] / m.shape[1] < 2 * level["stride"]
        else:
            assert m.shape[1] == -(-shape[1] // level["stride"]), (level, m.shape)
    strides = [level["stride"] for level in info]
    assert strides == sorted(strides), "levels must not go back to a finer resolution"


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_known_backbones(name):
    info = models.feature_info(name)
    assert [(level["stride"], level["channels"]) for level in info] == KNOWN[name]


def _tiny_batch(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def test_variables_are_the_classifiers_without_head_and_last_level_pools_to_its_features():
    x = _tiny_batch((2, 64, 64, 3))
    classifier = models.create("resnet18", num_classes=10)
    variables = jax.jit(classifier.init)(jax.random.key(1), x)
    stats = jax.tree.map(lambda a: a + 0.3, variables["batch_stats"])  # non-trivial statistics
    variables = {"params": variables["params"], "batch_stats": stats}
    features = models.create("resnet18", features_only=True, out_indices=(0, -1))
    headless = {"params": {k: v for k, v in variables["params"].items() if k != "head"},
                "batch_stats": stats}
    fv = jax.eval_shape(features.init, jax.random.key(2), x)
    assert jax.tree.structure(fv) == jax.tree.structure(headless)
    stem, last = jax.jit(features.apply)(headless, x)
    assert stem.shape == (2, 32, 32, 64) and last.shape == (2, 2, 2, 512)
    # Reference: the classifier's own pre-logit features = global average of the last level.
    pooled = jax.jit(models.create("resnet18", num_classes=0).apply)(headless, x)
    np.testing.assert_allclose(np.mean(np.asarray(last), axis=(1, 2)), pooled, rtol=1e-5, atol=1e-6)
    # And its logits follow from them with the head.
    logits = jax.jit(classifier.apply)(variables, x)
    head = variables["params"]["head"]
    np.testing.assert_allclose(pooled @ head["kernel"] + head["bias"], logits, rtol=1e-5, atol=1e-5)


def test_vit_levels_are_block_outputs_and_scan_agrees():
    x = _tiny_batch((2, 32, 32, 3))
    kw = dict(image_size=32)
    model = models.create("vit_ti16", num_classes=0, **kw)
    variables = jax.jit(model.init)(jax.random.key(0), x)
    # Reference: Flax's own record of every block's output.
    _, inter = jax.jit(lambda v, x: model.apply(v, x, capture_intermediates=True))(variables, x)
    blocks = inter["intermediates"]["encoder"]
    maps = jax.jit(models.create("vit_ti16", features_only=True, **kw).apply)(variables, x)
    assert len(maps) == 12
    for i, m in enumerate(maps):
        tokens = blocks[f"block_{i}"]["__call__"][0]  # (N, 1 + 2*2, 192)
        np.testing.assert_array_equal(m, tokens[:, 1:].reshape(2, 2, 2, 192))
    scanned = models.create("vit_ti16", features_only=True, out_indices=(3, -1), scan_layers=True,
                            **kw)
    stacked = {"params": stack_encoder_params(flax.core.unfreeze(variables["params"]))}
    got = jax.jit(scanned.apply)(stacked, x)
    np.testing.assert_allclose(got[0], maps[3], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], maps[-1], rtol=1e-5, atol=1e-5)


def test_training_mode_updates_batch_stats():
    x = _tiny_batch((2, 32, 32, 3))
    model = models.create("resnet18", features_only=True, out_indices=(1,))
    variables = jax.jit(model.init)(jax.random.key(0), x)
    (m,), updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
        variables, x)
    assert m.shape == (2, 8, 8, 64)
    before = jax.tree.leaves(variables["batch_stats"])
    after = jax.tree.leaves(updates["batch_stats"])
    assert any(not np.allclose(a, b) for a, b in zip(before, after, strict=True))


def test_level_ends_of_mobilenet_v2_strides():
    strides = [1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]
    assert sorted(level_ends(strides)) == [0, 2, 5, 12, 16]


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="out of range"):
        jax.eval_shape(models.create("resnet18", features_only=True, out_indices=(5,)).init,
                       jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    with pytest.raises(ValueError, match="features_only=True"):
        models.create("resnet18", out_indices=(1,))
    with pytest.raises(ValueError, match="without its head"):
        models.create("resnet18", num_classes=10, features_only=True)
