"""MobileNetV3 Large/Small: exact torchvision parameter counts, a tiny forward, features_only.
Reference parity: tests/convert/fixtures/mobilenet_v3_{small,large}.npz."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import models

# torchvision 0.29 mobilenet_v3_large / mobilenet_v3_small (weights=None, 1000 classes): the
# counts of /work/shared/reference/param_counts.json keys mobilenet_v3_large/_small, recounted
# from the torchvision objects in /work/torchvenv.
TORCHVISION = {"mobilenet_v3_large": 5_483_032, "mobilenet_v3_small": 2_542_856}


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_parameter_count(name):
    assert models.model_info(name)["params"] == TORCHVISION[name]


@pytest.mark.parametrize("name, levels", [
    ("mobilenet_v3_large", [(2, 16), (4, 24), (8, 40), (16, 112), (32, 160)]),
    ("mobilenet_v3_small", [(2, 16), (4, 16), (8, 24), (16, 48), (32, 96)]),  # timm's too
])
def test_feature_levels(name, levels):
    info = models.feature_info(name)
    assert [(level["stride"], level["channels"]) for level in info] == levels


def test_tiny_forward_train_and_eval():
    model = models.create("mobilenet_v3_small", num_classes=3, width_multiplier=0.25,
                          drop_path_rate=0.2)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)
    variables = jax.jit(model.init)(jax.random.key(0), x)
    logits = jax.jit(model.apply)(variables, x)
    assert logits.shape == (2, 3) and bool(jnp.all(jnp.isfinite(logits)))
    train = jax.jit(lambda v, x, r: model.apply(v, x, train=True, mutable=["batch_stats"],
                                                rngs={"dropout": r, "drop_path": r}))
    out, updates = train(variables, x, jax.random.key(1))
    assert out.shape == (2, 3)
    assert not np.allclose(jax.tree.leaves(updates["batch_stats"])[0],
                           jax.tree.leaves(variables["batch_stats"])[0])
