"""ResNet's CIFAR stem: a 3x3/1 conv without max pool keeps 32x32 inputs at full resolution."""

import jax
import jax.numpy as jnp
import pytest

from jaxvision import models


def test_cifar_stem_shapes_and_params():
    imagenet = models.create("resnet18", num_classes=10)
    cifar = models.create("resnet18", num_classes=10, stem="cifar")
    x = jnp.zeros((2, 32, 32, 3))
    vi = models.abstract_variables(imagenet, x.shape)
    vc = models.abstract_variables(cifar, x.shape)
    # torchvision ResNet-18 with a 10-class head has 11,181,642 parameters; the CIFAR stem trades
    # the 7x7x3x64 kernel for a 3x3x3x64 one: 11,181,642 - (49 - 9) * 3 * 64 = 11,173,962.
    assert models.count_params(vi["params"]) == 11_181_642
    assert models.count_params(vc["params"]) == 11_173_962
    feats = jax.eval_shape(
        lambda v, x: cifar.apply(v, x, capture_intermediates=True)[1], vc, x)
    # last stage: 32 / 8 = 4 (three stride-2 stages), versus 1x1 with the ImageNet stem
    assert feats["intermediates"]["backbone"]["__call__"][0].shape == (2, 4, 4, 512)


def test_unknown_stem_is_a_clear_error():
    model = models.create("resnet18", stem="cifr")
    with pytest.raises(ValueError, match="unknown ResNet stem 'cifr'"):
        model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
