"""Random erasing (data.augment.random_erasing) against timm's RandomErasing: the box geometry
exactly, given the same uniform draws, against a plain-Python transcription of timm's `_erase`;
the per-image statistics (probability, area, aspect, N(0, 1) fill, untouched pixels) over many
draws; and the config checks."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import config as config_lib
from jaxvision.data import augment

ATTEMPTS = augment.ERASING_ATTEMPTS


def timm_box(u, img_h, img_w, min_area=0.02, max_area=1 / 3, min_aspect=0.3):
    """timm/data/random_erasing.py RandomErasing._erase (count 1) with its `random.uniform` /
    `random.randint` draws taken from `u` in order: (top, left, h, w) or None when nothing fits."""
    area = img_h * img_w
    log_ratio = (math.log(min_aspect), math.log(1 / min_aspect))
    for attempt in range(ATTEMPTS):
        target_area = (min_area + (max_area - min_area) * float(u[attempt])) * area
        aspect_ratio = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * float(u[ATTEMPTS + attempt]))
        h = int(round(math.sqrt(target_area * aspect_ratio)))
        w = int(round(math.sqrt(target_area / aspect_ratio)))
        if w < img_w and h < img_h:
            top = int(float(u[2 * ATTEMPTS]) * (img_h - h + 1))  # random.randint(0, img_h - h)
            left = int(float(u[2 * ATTEMPTS + 1]) * (img_w - w + 1))
            return top, left, h, w
    return None


@pytest.mark.parametrize("height,width", [(224, 224), (7, 13), (1, 3)])
def test_box_geometry_matches_timm(height, width):
    u = np.asarray(jax.random.uniform(jax.random.key(0), (400, 2 * ATTEMPTS + 2)))
    top, left, h, w, fits = map(np.asarray, augment.erasing_boxes(jnp.asarray(u), height, width))
    want = [timm_box(row, height, width) for row in u]
    assert fits.tolist() == [b is not None for b in want]
    got = [(int(a), int(b), int(c), int(d)) for a, b, c, d in zip(top, left, h, w, strict=True)]
    assert [g for g, ok in zip(got, fits, strict=True) if ok] == [b for b in want if b is not None]
    if height == 1:  # a 1-pixel-high image rarely fits a box: the no-erase path is exercised
        assert 0 < fits.sum() < len(fits)


SHAPE = (1000, 16, 16, 3)  # one shape for all draws: one compilation per mode and dtype


@functools.partial(jax.jit, static_argnames=("mode", "dtype"))
def _erased(key, prob, mode, dtype):
    images = jnp.full(SHAPE, 7.0, dtype)  # 7 is no N(0, 1) draw, nor 0
    return augment.random_erasing(key, images, prob, mode=mode)


def _erase(mode, prob, dtype=jnp.float32):
    out = _erased(jax.random.key(1), prob, mode, dtype)
    assert out.dtype == dtype
    out = np.asarray(out.astype(jnp.float32))
    return out, out != 7.0


def test_pixel_mode_statistics():
    out, changed = _erase("pixel", 0.25)
    n, img_h, img_w, _ = out.shape
    pixel_changed = changed.any(-1)
    assert (changed == pixel_changed[..., None]).all()  # every channel of an erased pixel
    erased = pixel_changed.any((1, 2))
    # Binomial(1000, 0.25), minus the rare image where no attempt fits: 5 standard deviations.
    sd = math.sqrt(n * 0.25 * 0.75)
    assert abs(erased.sum() - n * 0.25) < 5 * sd, erased.sum()
    for m in pixel_changed[erased]:  # one solid rectangle per erased image
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
        assert m.sum() == h * w and h < img_h and w < img_w
        # Some target area in [0.02, 1/3] of the image and aspect in [0.3, 1/0.3] round to h x w
        # (each side off by at most half a pixel).
        assert (h - 0.5) * (w - 0.5) <= img_h * img_w / 3
        assert (h + 0.5) * (w + 0.5) >= 0.02 * img_h * img_w
        assert (h - 0.5) / (w + 0.5) <= 1 / 0.3 and (h + 0.5) / (w - 0.5) >= 0.3
    noise = out[changed]
    assert noise.size > 10_000
    assert abs(noise.mean()) < 0.03 and abs(noise.std() - 1.0) < 0.03  # N(0, 1)
    assert (out[~changed] == 7.0).all()


def test_probability_ends_and_bfloat16():
    _, changed = _erase("pixel", 0.0)
    assert not changed.any()
    _, changed = _erase("pixel", 1.0)
    erased = changed.any((1, 2, 3))
    assert erased.mean() > 0.99  # all but the images where no attempt fits (timm: no erase)
    _, changed_bf16 = _erase("pixel", 1.0, jnp.bfloat16)
    np.testing.assert_array_equal(changed_bf16.any((1, 2, 3)), erased)  # same boxes in bf16
    with pytest.raises(ValueError, match="mode 'pixl'"):
        augment.random_erasing(jax.random.key(2), jnp.zeros((1, 4, 4, 1)), 1.0, mode="pixl")


def test_rand_and_const_modes_fill_one_colour():
    out, changed = _erase("rand", 1.0)
    masks = changed.any(-1)
    firsts = []
    for img, m in zip(out, masks, strict=True):
        if m.any():
            colours = img[m]
            assert (colours == colours[0]).all()  # one colour per channel per box
            firsts.append(colours[0])
    firsts = np.stack(firsts)
    assert abs(firsts.mean()) < 0.1 and abs(firsts.std() - 1.0) < 0.1  # N(0, 1), ~3000 values
    out, changed = _erase("const", 1.0)
    assert changed.any((1, 2, 3)).mean() > 0.99 and (out[changed] == 0.0).all()


def test_batch_augment_erases_before_mixing():
    base = config_lib.base_config().data
    assert augment.batch_augment(base, 10) is None  # default: nothing on device

    def data(**kw):
        d = base.copy_and_resolve_references()
        with d.unlocked():
            d.update(kw)
        return d

    erase_mix = augment.batch_augment(data(random_erasing_prob=1.0, random_erasing_mode="const",
                                           mixup_alpha=1.0), 10)
    mix_only = augment.batch_augment(data(mixup_alpha=1.0), 10)
    images = jnp.full((8, 16, 16, 1), 7.0)
    labels = jnp.arange(8) % 10
    run = jax.jit(lambda k: (erase_mix(k, images, labels), mix_only(k, images, labels)))
    (mixed, soft), (_, soft_plain) = run(jax.random.key(3))
    # mixup of erased images with their reverse: some pixels lie strictly between 0 and 7
    assert soft.shape == (8, 10) and np.allclose(soft.sum(1), 1.0)
    assert ((np.asarray(mixed) > 0) & (np.asarray(mixed) < 7)).any()
    # mixup keeps the key it had without erasing: same lambda, same soft labels
    np.testing.assert_array_equal(soft, soft_plain)


@pytest.mark.parametrize("key,value,message", [
    ("random_erasing_prob", 1.5, r"data.random_erasing_prob must be in \[0.0, 1.0\], got 1.5"),
    ("random_erasing_prob", -0.1, r"data.random_erasing_prob must be in"),
    ("random_erasing_prob", float("nan"), r"data.random_erasing_prob must be in"),
    ("mixup_switch_prob", 2.0, r"data.mixup_switch_prob must be in"),
    ("mixup_alpha", -1.0, r"data.mixup_alpha must be in"),
    ("random_erasing_mode", "pixl", r"random_erasing_mode='pixl'.*did you mean 'pixel'"),
])
def test_bad_values_are_refused(key, value, message):
    c = config_lib.base_config()
    c.total_steps = 1
    c.data[key] = value
    with pytest.raises(ValueError, match=message):
        config_lib.check(c)
