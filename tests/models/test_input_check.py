"""Every registered model refuses input it cannot take with one error naming NHWC/float and the
shape received; correct input gives exactly the family's own result."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import models
from jaxvision.models.input_check import InputLayoutError


@pytest.mark.parametrize("name, size, channels", [("lenet5", 32, 1), ("resnet18", 32, 3),
                                                  ("vit_ti16", 32, 3)])
def test_nchw_uint8_and_rank_are_named(name, size, channels):
    model = models.create(name, num_classes=4)
    key = jax.random.key(0)
    nchw = jnp.zeros((2, channels, size, size))
    if channels == 3:  # a 1-channel NCHW image is also a valid 1-pixel-wide NHWC one
        with pytest.raises(InputLayoutError, match=r"NHWC.*\(2, 3, 32, 32\).*NCHW"):
            model.init(key, nchw, train=False)
    with pytest.raises(InputLayoutError, match=r"float.*uint8 of shape \(2, 32, 32"):
        model.init(key, jnp.zeros((2, size, size, channels), jnp.uint8), train=False)
    with pytest.raises(InputLayoutError, match=r"NHWC.*shape \(32, 32"):
        model.init(key, jnp.zeros((size, size, channels)), train=False)


def test_wrong_channels_at_apply_names_the_layout():
    model = models.create("resnet18", num_classes=4)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    with pytest.raises(InputLayoutError, match=r"\(1, 32, 32, 1\).*NHWC: 1 channels.*3, 64"):
        model.apply(variables, jnp.zeros((1, 32, 32, 1)), train=False)


def test_the_check_changes_nothing_else():
    """Same variable tree and logits as the family's module built directly."""
    from jaxvision.models.lenet import LeNet5

    checked = models.create("lenet5", num_classes=10)
    plain = LeNet5(num_classes=10)
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 1))
    v = plain.init(jax.random.key(0), x, train=False)
    assert jax.tree.structure(checked.init(jax.random.key(0), x, train=False)) == \
        jax.tree.structure(v)
    np.testing.assert_array_equal(checked.apply(v, x, train=False), plain.apply(v, x, train=False))
    assert isinstance(checked, LeNet5)
