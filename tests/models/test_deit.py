"""DeiT with distillation token: exact timm parameter counts and the two heads averaged as timm's
VisionTransformerDistilled does in eval mode. Reference parity: tests/convert/fixtures/
deit_distilled_timm.npz."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import models

# timm 1.0.31 deit_{tiny,small,base}_distilled_patch16_224 at 1000 classes (counted from the
# timm objects in /work/torchvenv); deit_s_distilled also in
# /work/shared/reference/param_counts.json.
TIMM = {"deit_ti_distilled": 5_910_800, "deit_s_distilled": 22_436_432,
        "deit_b_distilled": 87_338_192}
TINY = dict(hidden_size=16, num_layers=1, num_heads=2, mlp_dim=32, patch_size=8, image_size=16)


@pytest.mark.parametrize("name", sorted(TIMM))
def test_parameter_count(name):
    assert models.model_info(name)["params"] == TIMM[name]


def test_logits_are_the_mean_of_class_and_distillation_heads():
    model = models.create("deit_s_distilled", num_classes=3, **TINY)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 16, 16, 3)), jnp.float32)
    variables = jax.jit(model.init)(jax.random.key(0), x)
    rng = np.random.default_rng(1)  # heads start at zero: give them values
    params = jax.tree.map(lambda a: a + rng.normal(size=a.shape).astype(np.float32) * 0.1,
                          variables["params"])
    logits, inter = jax.jit(lambda p: model.apply({"params": p}, x, capture_intermediates=True))(
        params)
    tokens = inter["intermediates"]["encoder"]["__call__"][0]  # (2, 2 + 4, 16), final-normed
    assert tokens.shape == (2, 6, 16)
    h, d = params["head"], params["head_dist"]
    want = ((tokens[:, 0] @ h["kernel"] + h["bias"]) + (tokens[:, 1] @ d["kernel"] + d["bias"])) / 2
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-6)
    features = models.create("deit_s_distilled", num_classes=0, **TINY).apply({"params": params}, x)
    np.testing.assert_allclose(features, (tokens[:, 0] + tokens[:, 1]) / 2, rtol=1e-5, atol=1e-6)
