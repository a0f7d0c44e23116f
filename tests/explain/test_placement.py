"""Grad-CAM's layer and placement: the default layer keeps a readable grid at small inputs, the
map is placed where its cells' receptive fields are centred (checked against receptive-field
arithmetic), and a method the model cannot do is refused in one sentence."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import explain, models

gradcam_lib = importlib.import_module("jaxvision.explain.gradcam")


def _init(name, size, channels, **kw):
    model = models.create(name, num_classes=10, **kw)
    x = jax.random.normal(jax.random.key(0), (1, size, size, channels))
    return model, model.init(jax.random.key(1), x, train=False), x


def test_lenet_cells_sit_where_the_valid_convolutions_put_them():
    # conv1 5x5 valid: cell k centred at input k + 2; 2x2 pool: j at 2j + 2.5; conv2 5x5 valid:
    # i at pool i + 2, i.e. input 2i + 6.5. Max pooling's tie-break may shift it by half a pixel.
    model, variables, x = _init("lenet5", 32, 1)
    assert explain.default_layer(model, variables, x) == "conv2"
    (ay, by), (ax, bx) = gradcam_lib.feature_centers(model, variables, x, "conv2")
    assert by == pytest.approx(2.0, abs=0.05) and bx == pytest.approx(2.0, abs=0.05)
    assert ay == pytest.approx(6.5, abs=0.6) and ax == pytest.approx(6.5, abs=0.6)
    # A map lit at one cell lights the input around that cell's centre, not the image edge.
    cam = jnp.zeros((1, 10, 10)).at[0, 0, 9].set(1.0)
    heat = np.asarray(gradcam_lib.align_to_input(cam, ((ay, by), (ax, bx)), (32, 32)))[0]
    i, j = np.unravel_index(heat.argmax(), heat.shape)
    assert abs(i - (ay + 0 * by)) <= 1 and abs(j - (ax + 9 * bx)) <= 1
    assert heat[0, :].max() < 0.5 and heat[:, 31].max() < 0.5  # 6 px of border stay dark


def test_small_inputs_take_an_earlier_stage_with_a_readable_grid():
    model, variables, x = _init("resnet18", 64, 3)
    layer = explain.default_layer(model, variables, x)
    shape = dict(explain.feature_layers(model, variables, x))[layer]
    assert shape[1:3] == (8, 8)  # stage 2 (stride 8); stage 4 would be 2x2
    heat, logits, used = explain.gradcam(model, variables, x)
    assert used == layer and heat.shape == (1, 64, 64) and logits.shape == (1, 10)


@pytest.mark.parametrize("name, size, channels, method, fits", [
    ("lenet5", 32, 1, "rollout", "gradcam, saliency or integrated_gradients"),
    ("resnet18", 32, 3, "token_gradcam", "ResNet has none"),
])
def test_impossible_methods_are_refused(name, size, channels, method, fits):
    model, variables, x = _init(name, size, channels)
    with pytest.raises(ValueError, match=fits):
        explain.explain(model, variables, x, method=method)
