"""The fixed-size form of the evaluation transform equals the pipeline's own TF ops."""

import numpy as np
import pytest

from jaxvision.data import preprocess
from jaxvision.data._tf import tf
from jaxvision.export import fixed_size_transform, parse_input_size
from jaxvision.export.preprocessing import tf_eval_batch


def resolved(size, channels, crop_fraction):
    mean, std = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) if channels == 3 else ((0.13,), (0.31,))
    return preprocess.Resolved(size, channels, mean, std, "center", 0, crop_fraction, False)


@pytest.mark.parametrize("size, channels, crop_fraction, hw", [
    (32, 1, 1.0, (28, 28)),    # LeNet on MNIST: upsampling, RGB -> gray
    (24, 3, 0.875, (40, 33)),  # ImageNet-style: shorter side to 27, central 24x24 (downsampling)
    (16, 3, 0.875, (70, 150)),  # wide image, strong antialiased downsampling, > one probe chunk
])
def test_matches_eval_transform(size, channels, crop_fraction, hw):
    r = resolved(size, channels, crop_fraction)
    images = np.random.default_rng(0).integers(0, 256, (3, *hw, 3), dtype=np.uint8)
    expected = np.stack([preprocess.eval_transform(tf.constant(im), r).numpy() for im in images])
    got = np.asarray(fixed_size_transform(r, hw)(images))
    assert got.shape == expected.shape == (3, size, size, channels)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)
    np.testing.assert_allclose(tf_eval_batch(tf.constant(images), r).numpy(), expected, atol=0)


def test_rejects_an_empty_size():
    with pytest.raises(ValueError, match="positive"):
        fixed_size_transform(resolved(8, 3, 1.0), (0, 8))


def test_input_size_text():
    assert parse_input_size("28") == (28, 28) and parse_input_size("240x320") == (240, 320)
    for bad in ("0x28", "abc", "1x2x3", "-4"):
        with pytest.raises(ValueError, match="S or HxW"):
            parse_input_size(bad)
