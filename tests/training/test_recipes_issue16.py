"""The Swin-T, CoAtNet-0 and MaxViT-T recipes' settings that test_recipes does not probe
(clipping, stochastic depth, augmentation, batch, epochs) against the published ones, and the
accuracy each docstring promises; the random erasing of the Swin, ConvNeXt and DeiT recipes and
that the train step applies it. Optimizer, schedule and a mock-data run: test_recipes.py."""

import importlib.util
import os

import jax
import jax.numpy as jnp
import numpy as np
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


# name -> random erasing probability of the official training command (mode 'pixel', count 1):
# Swin configs/config.py AUG.REPROB 0.25; ConvNeXt main.py --reprob 0.25; DeiT main.py
# --reprob 0.25 (imagenet_vit_s16 is DeiT-S's recipe, which the distilled one extends).
ERASING = {"imagenet_swin_t": 0.25, "imagenet_convnext_t": 0.25, "imagenet_vit_s16": 0.25,
           "imagenet_deit_s_distilled": 0.25}


@pytest.mark.parametrize("name", sorted(ERASING))
def test_random_erasing_is_the_official_setting(name):
    c = load_recipe(name)
    assert (c.data.random_erasing_prob, c.data.random_erasing_mode) == (ERASING[name], "pixel")
    doc = " ".join(open(os.path.join(REPO, "configs", f"{name}.py")).read().split())
    assert "random erasing 0.25" in doc and "erasing 0.25, which" not in doc


class _Captured(Exception):
    pass


def test_train_step_erases_as_the_recipe_says(monkeypatch):
    """The loop hands the train step an augmentation that erases each image with the recipe's
    probability (captured from make_train_step; no model is built or compiled)."""
    import types

    from jaxvision.training import loop, steps

    c = load_recipe("imagenet_swin_t", "--config.data.mixup_alpha=0", "--config.data.cutmix_alpha=0")
    seen = {}

    def spy(model, **kw):
        seen.update(kw)
        raise _Captured

    monkeypatch.setattr(steps, "make_train_step", spy)
    job = types.SimpleNamespace(config=c, num_classes=1000, model=None, schedule=None,
                                dp=types.SimpleNamespace(axis_name=None), objective=None)
    with pytest.raises(_Captured):
        loop._compile_train_step(job)
    n = 2000
    images = jnp.full((n, 16, 16, 3), 7.0)  # normalized images: 7 is no N(0, 1) draw
    labels = jnp.zeros((n,), jnp.int32)
    out, targets = jax.jit(seen["augment_fn"])(jax.random.key(0), images, labels)
    erased = np.asarray(out != 7.0).any((1, 2, 3)).mean()
    # Binomial(2000, 0.25) (less the rare image no box fits): 5 standard deviations
    assert abs(erased - 0.25) < 5 * np.sqrt(0.25 * 0.75 / n), erased
    assert (np.asarray(targets) == 0).all()  # mixing turned off here: the labels unchanged
