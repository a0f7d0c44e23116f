"""The NumPy evaluation transform (predict / explain without TensorFlow) gives the TF pipeline's
bits: TF's antialiased bilinear resize ported exactly, and the whole eval transform."""

import numpy as np
import pytest

from jaxvision.data import model_input, preprocess
from jaxvision.data._tf import tf
from jaxvision.data.antialiased_resize import resize_bilinear_antialiased


@pytest.mark.parametrize("shape,out", [
    ((28, 28, 1), (32, 32)),   # the default job's digits, upscaled
    ((100, 77, 3), (36, 50)),  # shrink (the kernel widens) to an odd aspect ratio
    ((8, 8, 1), (32, 32)),
    ((33, 41, 3), (33, 41)),   # same size: identity
    ((5, 300, 3), (64, 7)),    # one axis up, the other far down
])
def test_resize_is_tf_resize_bit_for_bit(shape, out):
    x = np.random.default_rng(sum(shape)).integers(0, 256, shape).astype(np.float32) / 255
    want = tf.image.resize(x, out, method="bilinear", antialias=True).numpy()
    np.testing.assert_array_equal(resize_bilinear_antialiased(x, *out), want)


@pytest.mark.parametrize("hw,channels,size,crop", [
    ((28, 28), 1, 32, 1.0), ((61, 47), 3, 32, 0.875), ((32, 32), 3, 32, 1.0), ((50, 90), 1, 24, 0.9),
])
def test_eval_transform_without_tensorflow_is_the_pipelines(hw, channels, size, crop):
    r = preprocess.Resolved(image_size=size, channels=channels, mean=(0.4,) * channels,
                            std=(0.25,) * channels, train_crop="center", pad_pixels=0,
                            eval_crop_fraction=crop, native_fixed=False)
    pixels = np.random.default_rng(size).integers(0, 256, (*hw, channels), dtype=np.uint8)
    want = preprocess.eval_transform(tf.constant(pixels), r).numpy()
    got = model_input.eval_transform_numpy(pixels, r)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("hw,channels,size,crop", [((28, 28), 1, 32, 1.0), ((61, 47), 3, 32, 0.875)])
def test_batched_eval_transform_is_each_rows_pipeline_transform(hw, channels, size, crop):
    r = preprocess.Resolved(image_size=size, channels=channels, mean=(0.5,) * channels,
                            std=(0.3,) * channels, train_crop="center", pad_pixels=0,
                            eval_crop_fraction=crop, native_fixed=False)
    batch = np.random.default_rng(7).integers(0, 256, (3, *hw, channels), dtype=np.uint8)
    got = model_input.eval_transform_numpy(batch, r)
    assert got.shape == (3, size, size, channels)
    for row, pixels in zip(got, batch, strict=True):
        np.testing.assert_array_equal(row, preprocess.eval_transform(tf.constant(pixels), r).numpy())
