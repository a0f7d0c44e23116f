"""RandAugment ops audited against their reference definitions (PIL's ImageOps/ImageEnhance, the
RandAugment paper's ranges): magnitude 0 is the identity (or the magnitude-free op itself),
strength grows with magnitude, and no magnitude gives a constant image."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from jaxvision.data import augment

RNG = np.random.default_rng(0)
U8 = RNG.integers(20, 236, (3, 3, 3)).astype(np.uint8)
U8 = np.asarray(Image.fromarray(U8).resize((20, 24), Image.BILINEAR))  # smooth, asymmetric
X = U8.astype(np.float32) / 255.0
PIL_IMG = Image.fromarray(U8)
SEED = tf.constant([3, 4], tf.int64)
MAGNITUDE_FREE = {"autocontrast": ImageOps.autocontrast, "equalize": ImageOps.equalize,
                  "invert": ImageOps.invert}


def _op(name, m, seed=SEED):
    return augment.randaugment_op(name, tf.constant(X), m, seed).numpy()


def _sign(seed=SEED):
    """The random sign the op draws from `seed` (+1 or -1), read off brightness at m = 10."""
    out = _op("brightness", 10, seed)
    return 1.0 if out.mean() > X.mean() else -1.0


def _strength(out):
    return float(np.abs(out - X).mean())


@pytest.mark.parametrize("name", augment.RANDAUGMENT_OPS)
def test_op_at_lowest_and_highest_magnitude(name):
    low, mid, high = _op(name, 0), _op(name, 5), _op(name, 10)
    for out in (low, mid, high):
        assert out.shape == X.shape and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert out.std() > 0.05 * X.std(), "a constant image"  # 0.1 x contrast: 0.1 x std
    if name in MAGNITUDE_FREE:  # no magnitude: the op itself, PIL's definition, at every m
        ref = np.asarray(MAGNITUDE_FREE[name](PIL_IMG), np.float32) / 255.0
        for out in (low, high):
            np.testing.assert_allclose(out, ref, atol=1.01 / 255)
        return
    np.testing.assert_allclose(low, X, atol=1e-6, err_msg="magnitude 0 must be the identity")
    assert 0 < _strength(mid) < _strength(high), "strength must grow with magnitude"


def test_posterize_keeps_8_to_4_bits_as_magnitude_grows():
    # PIL ImageOps.posterize(image, bits) is the definition; the paper's range is 4..8 bits.
    for m, bits in [(0, 8), (2, 8), (5, 6), (9, 5), (10, 4)]:
        ref = np.asarray(ImageOps.posterize(PIL_IMG, bits), np.float32) / 255.0
        np.testing.assert_allclose(_op("posterize", m), ref, atol=1e-6, err_msg=f"m={m}")


def test_solarize_threshold_falls_as_magnitude_grows():
    # PIL ImageOps.solarize(image, threshold) inverts pixels >= threshold; here 256 (1 - m/10).
    for m in (0, 3, 5, 10):
        threshold = 256 - int(256 * m / 10)
        ref = np.asarray(ImageOps.solarize(PIL_IMG, threshold), np.float32) / 255.0
        np.testing.assert_allclose(_op("solarize", m), ref, atol=1e-6, err_msg=f"m={m}")


@pytest.mark.parametrize("name,enhancer", [("color", ImageEnhance.Color),
                                           ("contrast", ImageEnhance.Contrast),
                                           ("brightness", ImageEnhance.Brightness),
                                           ("sharpness", ImageEnhance.Sharpness)])
def test_enhance_ops_match_pil_with_factor_one_plus_minus_0_9_level(name, enhancer):
    sign = _sign()
    for m in (0, 5, 10):
        factor = 1.0 + sign * 0.9 * m / 10
        ref = np.asarray(enhancer(PIL_IMG).enhance(factor), np.float32) / 255.0
        # PIL rounds to uint8 and takes its gray in integer luma: within 2 levels
        np.testing.assert_allclose(_op(name, m), ref, atol=2.01 / 255, err_msg=f"m={m}")


def test_rotate_and_translate_at_full_magnitude():
    sign = _sign()
    sq = np.zeros((41, 41, 1), np.float32)
    sq[19:22, 34:37] = 1.0  # a 3 x 3 dot 15 px right of the centre
    out = augment.randaugment_op("rotate", tf.constant(sq), 10, SEED).numpy()[..., 0]
    out[out == augment.GREY] = 0.0  # the corners filled with grey
    y, x = np.unravel_index(out.argmax(), out.shape)
    angle = np.degrees(np.arctan2(-(y - 20), x - 20))  # counter-clockwise, y down
    assert abs(angle - sign * 30) < 6  # the dot turned by +-30 degrees
    shifted = augment.randaugment_op("translate_x", tf.constant(X), 10, SEED).numpy()
    grey = np.isclose(shifted, augment.GREY).all(-1).all(0)  # columns filled with grey
    assert grey.sum() == pytest.approx(0.45 * X.shape[1], abs=1)


def test_magnitude_out_of_range_is_refused():
    with pytest.raises(ValueError, match="randaugment_m"):
        augment.randaugment_op("brightness", tf.constant(X), 11, SEED)
    with pytest.raises(ValueError, match="unknown RandAugment op"):
        augment.randaugment_op("blur", tf.constant(X), 5, SEED)
