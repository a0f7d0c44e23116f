"""Calibration/accuracy images of tflite_int8: read through the one decoder, as load_image."""

import numpy as np

from configs import mnist5k_lenet
from jaxvision.export import calibration


def test_split_pixels_decodes_encoded_images_to_rgb_uint8():
    # Regression: split_pixels called preprocess.decode with an int where it takes a Resolved,
    # so every `--format tflite_int8` export died with an AttributeError traceback.
    cfg = mnist5k_lenet.get_config()
    images, labels = calibration.split_pixels(cfg.data, "train", (28, 28), limit=5, shuffle_seed=0)
    assert images.shape == (5, 28, 28, 3) and images.dtype == np.uint8
    assert labels.shape == (5,) and labels.dtype == np.int64
    # Gray digits: three equal channels, both ink and background present.
    assert (images[..., 0] == images[..., 1]).all() and (images[..., 1] == images[..., 2]).all()
    assert images.min() < 64 and images.max() > 192


def test_split_pixels_resizes_to_the_fixed_input_size():
    cfg = mnist5k_lenet.get_config()
    images, _ = calibration.split_pixels(cfg.data, "test", (20, 24), limit=2)
    assert images.shape == (2, 20, 24, 3) and images.dtype == np.uint8
