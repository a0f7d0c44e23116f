"""Each augmentation keeps shape and range and does what it says; mixup/cutmix soft labels."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from jaxvision.data import augment, preprocess

RNG = np.random.default_rng(0)
IMG = RNG.uniform(0, 1, (20, 24, 3)).astype(np.float32)  # not square, on purpose


def _seed(i):
    return tf.constant([7, i], tf.int64)


def _in_unit(x):
    x = np.asarray(x)
    return x.min() >= 0.0 and x.max() <= 1.0


def test_flip_really_flips_half_the_time():
    outs = [augment.random_flip(tf.constant(IMG), _seed(i)).numpy() for i in range(20)]
    flipped = [np.array_equal(o, IMG[:, ::-1]) for o in outs]
    same = [np.array_equal(o, IMG) for o in outs]
    assert all(f or s for f, s in zip(flipped, same, strict=True))
    assert 3 <= sum(flipped) <= 17
    # stateless: the same seed gives the same decision
    np.testing.assert_array_equal(augment.random_flip(tf.constant(IMG), _seed(3)), outs[3])


def test_center_crop_takes_the_center():
    out = augment.center_crop(tf.constant(IMG), 10).numpy()
    np.testing.assert_array_equal(out, IMG[5:15, 7:17])


def test_resize_and_center_crop_eval_transform():
    big = RNG.uniform(0, 1, (64, 96, 3)).astype(np.float32)
    out = augment.resize_and_center_crop(tf.constant(big), 28, 0.875).numpy()
    # shorter side 64 -> 32 (= 28 / 0.875), width 96 -> 48, then the central 28 x 28
    ref = tf.image.resize(big, (32, 48), antialias=True).numpy()[2:30, 10:38]
    chex.assert_trees_all_close(out, ref, atol=1e-6)
    const = augment.resize(tf.fill((13, 17, 1), 0.25), 8).numpy()
    chex.assert_trees_all_close(const, np.full((8, 8, 1), 0.25, np.float32), atol=1e-6)


def test_rotate_90_is_rot90_and_random_rotation_keeps_range():
    sq = RNG.uniform(0, 1, (9, 9, 3)).astype(np.float32)
    out = augment.rotate(tf.constant(sq), 90.0).numpy()
    chex.assert_trees_all_close(out, np.rot90(sq, k=1, axes=(0, 1)), atol=1e-5)  # CCW
    r = augment.random_rotation(tf.constant(IMG), _seed(1), 30.0).numpy()
    assert r.shape == IMG.shape and _in_unit(r) and not np.allclose(r, IMG)


def test_inception_crop_and_pad_crop():
    big = RNG.uniform(0, 1, (50, 70, 3)).astype(np.float32)
    for i in range(5):
        out = augment.inception_crop(tf.constant(big), _seed(i), 32).numpy()
        assert out.shape == (32, 32, 3) and _in_unit(out)
    const = augment.inception_crop(tf.fill((50, 70, 1), 0.6), _seed(0), 16).numpy()
    chex.assert_trees_all_close(const, np.full((16, 16, 1), 0.6, np.float32), atol=1e-6)
    out = augment.random_pad_crop(tf.constant(IMG), _seed(2), 4).numpy()
    padded = np.pad(IMG, ((4, 4), (4, 4), (0, 0)))
    windows = [padded[y : y + 20, x : x + 24] for y in range(9) for x in range(9)]
    assert any(np.array_equal(out, w) for w in windows)


def test_color_jitter_factors_within_range():
    s = 0.4
    for i in range(5):
        out = augment.color_jitter(tf.constant(IMG), _seed(i), s, hue=0.1).numpy()
        assert out.shape == IMG.shape and _in_unit(out)
    gray = np.full((6, 6, 1), 0.5, np.float32)
    outs = [augment.color_jitter(tf.constant(gray), _seed(i), s).numpy().mean() for i in range(10)]
    # brightness only changes a constant gray image: factor in [0.6, 1.4]
    assert all(0.5 * (1 - s) - 1e-6 <= o <= 0.5 * (1 + s) + 1e-6 for o in outs)
    assert np.std(outs) > 0.01


def test_randaugment_shapes_range_determinism():
    for c in (1, 3):
        img = tf.constant(IMG[..., :c])
        outs = [augment.randaugment(img, _seed(i), 2, 9).numpy() for i in range(8)]
        for o in outs:
            assert o.shape == img.shape and _in_unit(o)
        assert sum(not np.allclose(o, IMG[..., :c]) for o in outs) >= 4
        np.testing.assert_array_equal(augment.randaugment(img, _seed(5), 2, 9), outs[5])


def test_randaugment_ops_match_pil():
    u8 = RNG.integers(30, 220, (16, 16, 3)).astype(np.uint8)
    x = tf.constant(u8.astype(np.float32) / 255.0)
    pil = Image.fromarray(u8)
    checks = [
        (augment._equalize(x), ImageOps.equalize(pil)),
        (augment._posterize(x, 3), ImageOps.posterize(pil, 3)),
        (augment._autocontrast(x), ImageOps.autocontrast(pil)),
    ]
    for got, ref in checks:
        np.testing.assert_allclose(got.numpy() * 255.0, np.asarray(ref, np.float32), atol=1.01)


def test_normalization_gives_the_mean_and_std():
    imgs = RNG.uniform(0.2, 0.9, (50, 4, 4, 3)).astype(np.float32)
    mean = imgs.mean(axis=(0, 1, 2))
    std = imgs.std(axis=(0, 1, 2))
    out = augment.normalize(tf.constant(imgs), tuple(mean), tuple(std)).numpy()
    chex.assert_trees_all_close(out.mean(axis=(0, 1, 2)), np.zeros(3), atol=1e-5)
    chex.assert_trees_all_close(out.std(axis=(0, 1, 2)), np.ones(3), atol=1e-5)


def test_train_transform_all_on_keeps_shape_and_normalized_range():
    cfg = preprocess_cfg = __import__("jaxvision.data", fromlist=["x"]).default_config()
    cfg.rotation, cfg.color_jitter, cfg.hue_jitter, cfg.randaugment_n = 10.0, 0.3, 0.05, 2
    meta = preprocess.Meta("imagenet2012", (None, None, 3), ("a", "b"))
    r = preprocess.resolve(preprocess_cfg, meta)
    assert r.train_crop == "inception" and r.image_size == 224
    u8 = tf.constant(RNG.integers(0, 256, (40, 60, 3)).astype(np.uint8))
    out = preprocess.train_transform(u8, _seed(0), r, cfg).numpy()
    mean, std = np.array(r.mean), np.array(r.std)
    assert out.shape == (224, 224, 3)
    assert (out >= -mean / std - 1e-5).all() and (out <= (1 - mean) / std + 1e-5).all()


@pytest.mark.parametrize("mode", ["mixup", "cutmix", "both"])
def test_mixup_cutmix_soft_labels(mode):
    b, k = 6, 5
    images = jnp.asarray(RNG.uniform(0, 1, (b, 12, 10, 3)).astype(np.float32))
    labels = jnp.array([0, 1, 2, 3, 4, 2])  # partner of i is b-1-i; all pairs differ
    alphas = {"mixup": (0.4, 0.0), "cutmix": (0.0, 1.0), "both": (0.4, 1.0)}[mode]
    fn = jax.jit(
        lambda key: augment.mixup_cutmix(
            key, images, labels, k, mixup_alpha=alphas[0], cutmix_alpha=alphas[1]
        )
    )
    for s in range(4):
        mixed, soft = fn(jax.random.key(s))
        chex.assert_shape(soft, (b, k))
        chex.assert_type(soft, jnp.float32)
        chex.assert_trees_all_close(soft.sum(-1), jnp.ones(b), atol=1e-6)
        lam = float(soft[0, labels[0]])  # weight of the image's own class
        partner = images[::-1]
        from_partner = np.isclose(mixed, partner).all(-1) & ~np.isclose(mixed, images).all(-1)
        if from_partner.any() or mode == "cutmix":  # cutmix: a box pasted from the partner
            chex.assert_trees_all_close(1.0 - from_partner[0].mean(), lam, atol=1e-6)
        else:  # mixup: convex combination with the label weight
            chex.assert_trees_all_close(mixed, lam * images + (1 - lam) * partner, atol=1e-5)


def test_mixup_off_returns_one_hot():
    images = jnp.zeros((2, 4, 4, 1))
    out, soft = augment.mixup_cutmix(jax.random.key(0), images, jnp.array([1, 2]), 3)
    chex.assert_trees_all_close(soft, jnp.array([[0, 1, 0], [0, 0, 1]], jnp.float32))
    assert out is images
