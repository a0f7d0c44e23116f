"""The Swin-T, CoAtNet-0 and MaxViT-T recipes' settings that test_recipes does not probe
(clipping, stochastic depth, augmentation, batch, epochs) against the published ones, and the
accuracy each docstring promises. Optimizer, schedule and a mock-data run: test_recipes.py."""

import importlib.util
import os

import pytest

from tests.training.test_recipes import REPO, load_recipe

# name -> (model, batch, epochs, drop path, clip, RandAugment (n, m), mixup, cutmix, published top-1)
# Swin paper A2.1 / official swin_tiny config; CoAtNet and MaxViT papers' ImageNet-1K tables.
PUBLISHED = {
    "imagenet_swin_t": ("swin_t", 1024, 300, 0.2, 5.0, (2, 9), 0.8, 1.0, "81.3%"),
    "imagenet_coatnet_0": ("coatnet_0", 4096, 300, 0.2, 1.0, (2, 5), 0.8, 0.0, "81.6%"),
    "imagenet_maxvit_t": ("maxvit_t", 4096, 300, 0.2, 1.0, (2, 5), 0.8, 0.0, "83.6%"),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_recipe_settings_are_the_papers(name):
    model, batch, epochs, drop_path, clip, (n, m), mixup, cutmix, top1 = PUBLISHED[name]
    c = load_recipe(name)
    assert (c.model.name, c.batch_size, c.epochs) == (model, batch, epochs)
    assert (c.model.drop_path_rate, c.clip_grad_norm, c.label_smoothing) == (drop_path, clip, 0.1)
    assert (c.data.randaugment_n, c.data.randaugment_m) == (n, m)
    assert (c.data.mixup_alpha, c.data.cutmix_alpha, c.ema_decay) == (mixup, cutmix, 0.0)
    assert (c.data.image_size, c.dtype, c.optimizer.name) == (224, "bfloat16", "adamw")
    assert "relative_position_bias_table" in c.optimizer.no_decay_regex
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert f"Published: {top1}" in " ".join(module.__doc__.split())
