"""Image augmentation: per-example ops in TensorFlow (host) and batch mixing in JAX (device).

TensorFlow ops take one image `float32 (H, W, C)` with values in [0, 1] (C = 1 or 3) and, when
random, a stateless seed `int32/int64 (2,)`; the same seed always gives the same result, which is
what makes a training stream a pure function of (seed, position) and resumable exactly.

`random_erasing` and `mixup_cutmix` run inside the jitted train step on a batch `(B, H, W, C)`;
`batch_augment` composes them from a data config.
"""

import functools
import math

import jax
import jax.numpy as jnp

from jaxvision.data._tf import tf

GREY = 0.5  # fill value of geometric ops and cutout (128/255 in the reference implementations)


# ----------------------------------------------------------------------------- seeds
def split_seed(seed, num: int):
    """Splits a stateless seed (2,) into `num` independent seeds (num, 2)."""
    return tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num)


def _uniform(seed, minval=0.0, maxval=1.0):
    return tf.random.stateless_uniform([], seed, minval=minval, maxval=maxval)


# ----------------------------------------------------------------------------- deterministic
def resize(image, size: int | tuple[int, int]):
    """Bilinear (antialiased) resize to (size, size) or (h, w); float32 out."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    return tf.image.resize(tf.cast(image, tf.float32), hw, method="bilinear", antialias=True)


def resize_shorter(image, size: int):
    """Resizes so that the shorter side is `size`, keeping the aspect ratio."""
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    scale = tf.cast(size, tf.float32) / tf.minimum(h, w)
    new_h = tf.maximum(1, tf.cast(tf.round(h * scale), tf.int32))
    new_w = tf.maximum(1, tf.cast(tf.round(w * scale), tf.int32))
    return tf.image.resize(tf.cast(image, tf.float32), [new_h, new_w], antialias=True)


def center_crop(image, size: int):
    """Takes the central (size, size) window (the image must be at least that large)."""
    shape = tf.shape(image)
    top = (shape[0] - size) // 2
    left = (shape[1] - size) // 2
    return image[top : top + size, left : left + size, :]


def resize_and_center_crop(image, size: int, crop_fraction: float):
    """Eval transform: shorter side to size / crop_fraction, then the central size x size."""
    if crop_fraction >= 1.0:
        return resize(image, size)
    return center_crop(resize_shorter(image, int(math.floor(size / crop_fraction + 0.5))), size)


def to_channels(image, channels: int):
    """Converts between gray (1) and RGB (3) channels; RGBA drops alpha."""
    c = image.shape[-1]
    if c == channels:
        return image
    if c == 4:
        image, c = image[..., :3], 3
        if channels == 3:
            return image
    if c == 1 and channels == 3:
        return tf.image.grayscale_to_rgb(image)
    if c == 3 and channels == 1:
        # Pillow's 'L' weights (ITU-R 601-2 luma in 16-bit fixed point, 19595/38470/7471 of
        # 65536, summing to 1), the file decoder's conversion (data.image_file): arrays and files
        # give the same gray, and gray replicated to RGB comes back unchanged. TF's
        # rgb_to_grayscale weights sum to 0.9999.
        weights = tf.constant([19595.0, 38470.0, 7471.0], image.dtype) / 65536.0
        return tf.reduce_sum(image * weights, axis=-1, keepdims=True)
    raise ValueError(f"cannot convert an image with {c} channels to {channels} channels")


def normalize(image, mean, std):
    """(image - mean) / std per channel; image in [0, 1], mean/std in [0, 1] units."""
    mean = tf.constant(mean, tf.float32)
    std = tf.constant(std, tf.float32)
    return (image - mean) / std


def rotate(image, degrees, fill: float = 0.0):
    """Rotates counter-clockwise by `degrees` about the centre (bilinear), corners filled."""
    img = tf.cast(image, tf.float32)
    h = tf.cast(tf.shape(img)[0], tf.float32)
    w = tf.cast(tf.shape(img)[1], tf.float32)
    # The transform maps output pixel coords to input coords (y down): positive angle = CCW.
    theta = tf.cast(degrees, tf.float32) * math.pi / 180.0
    cos, sin = tf.cos(theta), tf.sin(theta)
    x_off = ((w - 1) - (cos * (w - 1) - sin * (h - 1))) / 2.0
    y_off = ((h - 1) - (sin * (w - 1) + cos * (h - 1))) / 2.0
    transform = tf.stack([cos, -sin, x_off, sin, cos, y_off, 0.0, 0.0])
    return _transform(img, transform, fill)


def _transform(img, transform, fill):
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=img[None],
        transforms=tf.reshape(tf.cast(transform, tf.float32), [1, 8]),
        output_shape=tf.shape(img)[:2],
        fill_value=tf.cast(fill, tf.float32),
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    return tf.ensure_shape(out[0], img.shape)


# ----------------------------------------------------------------------------- random, per example
def inception_crop(image, seed, size: int, area_range=(0.08, 1.0), aspect_range=(3 / 4, 4 / 3)):
    """Random resized crop (Szegedy et al. 2015): a box covering a random fraction of the area
    with a random aspect ratio, resized to (size, size). Whole image when no box fits in 10 tries."""
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], tf.float32, [1, 1, 4]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=aspect_range,
        area_range=area_range,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, crop_size)
    return resize(crop, size)


def random_pad_crop(image, seed, pad: int):
    """Zero-pads every side by `pad` pixels and takes a random crop of the original size."""
    shape = tf.shape(image)
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    out = tf.image.stateless_random_crop(padded, shape, seed)
    return tf.ensure_shape(out, image.shape)


def random_flip(image, seed):
    """Mirrors left-right with probability 0.5."""
    return tf.image.stateless_random_flip_left_right(image, seed)


def random_rotation(image, seed, max_degrees: float, fill: float = 0.0):
    """Rotates by an angle uniform in [-max_degrees, max_degrees]."""
    return rotate(image, _uniform(seed, -max_degrees, max_degrees), fill)


def color_jitter(image, seed, strength: float, hue: float = 0.0):
    """Brightness, contrast and saturation factors uniform in [1-s, 1+s] (multiplicative, as
    torchvision), and a hue shift uniform in [-hue, hue]; fixed order, output clipped to [0, 1]."""
    seeds = split_seed(seed, 4)
    lo, hi = max(0.0, 1.0 - strength), 1.0 + strength
    if strength > 0:
        image = image * _uniform(seeds[0], lo, hi)
        image = tf.clip_by_value(image, 0.0, 1.0)
        mean = tf.reduce_mean(_gray(image))
        image = tf.clip_by_value(mean + (image - mean) * _uniform(seeds[1], lo, hi), 0.0, 1.0)
        if image.shape[-1] == 3:
            gray = _gray(image)
            image = tf.clip_by_value(gray + (image - gray) * _uniform(seeds[2], lo, hi), 0.0, 1.0)
    if hue > 0 and image.shape[-1] == 3:
        image = tf.image.adjust_hue(image, _uniform(seeds[3], -hue, hue))
    return tf.clip_by_value(image, 0.0, 1.0)


def _gray(image):
    if image.shape[-1] == 1:
        return image
    return tf.image.rgb_to_grayscale(image)


# ----------------------------------------------------------------------------- RandAugment
# Cubuk et al. 2020, "RandAugment"; the op list of the TF reference implementation
# (tensorflow/tpu models/official/efficientnet/autoaugment.py, `distort_image_with_randaugment`,
# used by big_vision): each layer picks one op uniformly and applies it with probability 0.5;
# magnitude m on the 0..10 scale, level = m / 10.
#
# Audited so that for every op magnitude 0 is the identity (or, for the three ops without a
# magnitude, the op itself), strength grows with m and no m gives a constant image. The reference
# maps three kinds of op the other way round, and so do we not (as timm's "increasing" ops):
#   posterize  reference keeps int(4 level) bits: 0 bits (an all-black image) at m < 2.5 and
#              weaker as m grows. Here 8 - int(4 level) bits: 8 (identity) at m = 0, 4 at m = 10,
#              the paper's range [4, 8].
#   solarize   reference threshold int(256 level): every pixel inverted at m = 0. Here pixels at or
#              above (256 - int(256 level)) / 255 are inverted: none at m = 0, all at m = 10.
#   color, contrast, brightness, sharpness: reference factor 1.8 level + 0.1 (strongest at m = 0,
#              identity at m = 5). Here 1 +- 0.9 level (random sign): identity at m = 0, 0.1 or 1.9
#              at m = 10, the reference's range.
# Unchanged from the reference: rotate +-30 level degrees, shear +-0.3 level, translate +-0.45
# level of the side (the reference's 100 px at 224), cutout of half-side 40 level px at 224
# (scaled to the image; none at m = 0), solarize-add of 110 level / 255 below 0.5.
_MAX_LEVEL = 10.0
RANDAUGMENT_OPS = (
    "autocontrast", "equalize", "invert", "rotate", "posterize", "solarize", "color", "contrast",
    "brightness", "sharpness", "shear_x", "shear_y", "translate_x", "translate_y", "cutout",
    "solarize_add",
)


def _blend(degenerate, image, factor):
    return tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 1.0)


def _to_u8(image):
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0), tf.int32)


def _autocontrast(image):
    lo = tf.reduce_min(image, axis=[0, 1], keepdims=True)
    hi = tf.reduce_max(image, axis=[0, 1], keepdims=True)
    scaled = (image - lo) / tf.maximum(hi - lo, 1e-6)
    return tf.where(hi > lo, scaled, image)


def _equalize(image):
    def channel(ch):
        ch = tf.reshape(ch, [-1])
        histo = tf.math.bincount(ch, minlength=256, maxlength=256)
        nonzero = tf.boolean_mask(histo, histo != 0)
        step = (tf.reduce_sum(nonzero) - nonzero[-1]) // 255

        def lut():
            table = (tf.cumsum(histo) + step // 2) // tf.maximum(step, 1)
            table = tf.concat([[0], table[:-1]], 0)
            return tf.gather(tf.clip_by_value(table, 0, 255), ch)

        return tf.cond(step == 0, lambda: ch, lut)

    u8 = _to_u8(image)
    shape = tf.shape(u8)
    chans = [tf.reshape(channel(u8[..., c]), shape[:2]) for c in range(image.shape[-1])]
    return tf.cast(tf.stack(chans, -1), tf.float32) / 255.0


def _posterize(image, bits):
    shift = 8 - bits
    u8 = _to_u8(image)
    return (
        tf.cast(tf.bitwise.left_shift(tf.bitwise.right_shift(u8, shift), shift), tf.float32) / 255.0
    )


def _sharpness(image, factor):
    c = image.shape[-1]
    kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, c, 1])
    smooth = tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], "VALID")[0]
    # Border pixels keep their value, as PIL does.
    padded = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
    mask = tf.pad(tf.ones_like(smooth), [[1, 1], [1, 1], [0, 0]])
    degenerate = tf.where(mask > 0, padded, image)
    return _blend(degenerate, image, factor)


def _cutout(image, seed, half):
    shape = tf.shape(image)
    s = split_seed(seed, 2)
    cy = tf.random.stateless_uniform([], s[0], 0, shape[0], tf.int32)
    cx = tf.random.stateless_uniform([], s[1], 0, shape[1], tf.int32)
    ys = tf.range(shape[0])[:, None, None]
    xs = tf.range(shape[1])[None, :, None]
    inside = (tf.abs(ys - cy) < half) & (tf.abs(xs - cx) < half)
    return tf.where(inside, GREY, image)


def _affine(image, a, b, c, d, e, f):
    return _transform(image, tf.stack([a, b, c, d, e, f, 0.0, 0.0]), GREY)


def randaugment_op(name: str, image, magnitude: float, seed):
    """One RandAugment op at `magnitude` (0..10) on float32 (H, W, C) in [0, 1] (C = 1 or 3).

    `seed` int64 (2,) draws the op's random sign (rotate, shear, translate, enhance ops) and the
    cutout position. Raises ValueError for an unknown op or a magnitude outside [0, 10].
    """
    if name not in RANDAUGMENT_OPS:
        raise ValueError(f"unknown RandAugment op {name!r}; choose from {RANDAUGMENT_OPS}")
    if not 0.0 <= float(magnitude) <= _MAX_LEVEL:
        raise ValueError(
            f"RandAugment magnitude must be in [0, {_MAX_LEVEL:g}], got {magnitude} "
            "(config.data.randaugment_m)"
        )
    image = tf.cast(image, tf.float32)
    level = float(magnitude) / _MAX_LEVEL
    height, width = image.shape[0], image.shape[1]
    s = split_seed(seed, 2)
    sign = tf.where(_uniform(s[0]) < 0.5, -1.0, 1.0)
    factor = 1.0 + sign * 0.9 * level  # color / contrast / brightness / sharpness
    shear = sign * level * 0.3
    zero, one = tf.constant(0.0), tf.constant(1.0)
    ops = {
        "autocontrast": lambda: _autocontrast(image),
        "equalize": lambda: _equalize(image),
        "invert": lambda: 1.0 - image,
        "rotate": lambda: rotate(image, sign * level * 30.0, GREY),
        "posterize": lambda: _posterize(image, 8 - int(level * 4)),
        "solarize": lambda: tf.where(
            image < (256 - int(256 * level)) / 255.0, image, 1.0 - image
        ),
        "color": lambda: _blend(_gray(image) * tf.ones_like(image), image, factor),
        "contrast": lambda: _blend(
            tf.reduce_mean(_gray(image)) * tf.ones_like(image), image, factor
        ),
        "brightness": lambda: _blend(tf.zeros_like(image), image, factor),
        "sharpness": lambda: _sharpness(image, factor),
        "shear_x": lambda: _affine(image, one, shear, -shear * (height - 1) / 2, zero, one, zero),
        "shear_y": lambda: _affine(image, one, zero, zero, shear, one, -shear * (width - 1) / 2),
        "translate_x": lambda: _affine(image, one, zero, sign * level * 0.45 * width, zero, one,
                                       zero),
        "translate_y": lambda: _affine(image, one, zero, zero, zero, one,
                                       sign * level * 0.45 * height),
        "cutout": lambda: _cutout(image, s[1], int(level * 40 * min(height, width) / 224)),
        "solarize_add": lambda: tf.clip_by_value(
            tf.where(image < 0.5, image + level * 110.0 / 255.0, image), 0.0, 1.0
        ),
    }
    return tf.ensure_shape(ops[name](), image.shape)


def randaugment(image, seed, num_layers: int, magnitude: float):
    """RandAugment(n=num_layers, m=magnitude) on one image float32 (H, W, C) in [0, 1]: each
    layer applies one op of RANDAUGMENT_OPS, drawn uniformly, with probability 0.5."""
    image = tf.cast(image, tf.float32)
    for layer_seed in tf.unstack(split_seed(seed, num_layers)):
        s = split_seed(layer_seed, 3)
        op_index = tf.random.stateless_uniform([], s[0], 0, len(RANDAUGMENT_OPS), tf.int32)
        branches = [
            functools.partial(randaugment_op, name, image, magnitude, s[1])
            for name in RANDAUGMENT_OPS
        ]
        applied = tf.switch_case(op_index, branches)
        image = tf.ensure_shape(tf.where(_uniform(s[2]) < 0.5, applied, image), image.shape)
    return image


# ----------------------------------------------------------------------------- mixup / cutmix (JAX)
def mixup_cutmix(
    rng,
    images,
    labels,
    num_classes: int,
    *,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    switch_prob: float = 0.5,
    label_smoothing: float = 0.0,
):
    """Mixes a batch with its reverse (mixup, Zhang et al. 2018; cutmix, Yun et al. 2019).

    One lambda ~ Beta(alpha, alpha) per batch (as timm's batch mode). With both alphas > 0, cutmix
    is used with probability `switch_prob`, else mixup. Cutmix pastes a box of area (1 - lam) from
    the partner image, clipped at the border, and the label weight is the area actually pasted.

    Args:
      rng: jax PRNG key.
      images: float (B, H, W, C).
      labels: int (B,) class ids, or float (B, K) soft labels.
      num_classes: K.
    Returns:
      (images (B, H, W, C) same dtype, soft labels float32 (B, K) summing to 1).
    """
    if labels.ndim == 1:
        targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    else:
        targets = labels.astype(jnp.float32)
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return images, targets

    b, h, w = images.shape[0], images.shape[1], images.shape[2]
    k_mix, k_cut, k_switch, k_box = jax.random.split(rng, 4)
    partner_images = images[::-1]
    partner_targets = targets[::-1]

    def do_mixup():
        lam = jax.random.beta(k_mix, mixup_alpha, mixup_alpha).astype(jnp.float32)
        mixed = lam * images.astype(jnp.float32) + (1.0 - lam) * partner_images.astype(jnp.float32)
        return mixed.astype(images.dtype), lam

    def do_cutmix():
        lam = jax.random.beta(k_cut, cutmix_alpha, cutmix_alpha).astype(jnp.float32)
        ratio = jnp.sqrt(1.0 - lam)
        cut_h, cut_w = (h * ratio).astype(jnp.int32), (w * ratio).astype(jnp.int32)
        ky, kx = jax.random.split(k_box)
        cy = jax.random.randint(ky, (), 0, h)
        cx = jax.random.randint(kx, (), 0, w)
        y0, y1 = jnp.clip(cy - cut_h // 2, 0, h), jnp.clip(cy + cut_h // 2, 0, h)
        x0, x1 = jnp.clip(cx - cut_w // 2, 0, w), jnp.clip(cx + cut_w // 2, 0, w)
        ys = jnp.arange(h)[:, None]
        xs = jnp.arange(w)[None, :]
        box = (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)
        mixed = jnp.where(box[None, :, :, None], partner_images, images)
        lam_area = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
        return mixed, lam_area.astype(jnp.float32)

    if cutmix_alpha <= 0:
        mixed, lam = do_mixup()
    elif mixup_alpha <= 0:
        mixed, lam = do_cutmix()
    else:
        use_cutmix = jax.random.uniform(k_switch) < switch_prob
        mixed, lam = jax.lax.cond(use_cutmix, do_cutmix, do_mixup)
    soft = lam * targets + (1.0 - lam) * partner_targets
    del b
    return mixed, soft


# ----------------------------------------------------------------------------- random erasing (JAX)
ERASING_MODES = ("pixel", "rand", "const")
ERASING_AREA = (0.02, 1 / 3)  # timm RandomErasing min_area / max_area (fraction of the image)
ERASING_ASPECT_MIN = 0.3  # timm min_aspect; max_aspect = 1 / min_aspect, sampled log-uniformly
ERASING_ATTEMPTS = 10  # timm's tries to fit a box inside the image before giving up


def erasing_boxes(u, height: int, width: int, area_range=ERASING_AREA,
                  aspect_min: float = ERASING_ASPECT_MIN):
    """Box geometry of timm's `RandomErasing._erase` (count 1) from given uniform draws.

    Attempt i takes target area `uniform(area_range) * H * W` and aspect `exp(uniform(log
    aspect_min, -log aspect_min))`, box h = round(sqrt(area * aspect)), w = round(sqrt(area /
    aspect)) (round half to even, as Python's `round`), and keeps the first with h < H and w < W;
    the corner is then uniform over the integer positions that keep the box inside. No erase when
    no attempt fits (as timm).

    Args:
      u: float32 (B, 2 * A + 2) uniforms in [0, 1): A area draws, A aspect draws, top, left
        (A = ERASING_ATTEMPTS).
      height, width: image size in pixels.
    Returns:
      int32 (B,) each: top, left, box_h, box_w (pixels; 0 x 0 when nothing fits), and
      bool (B,) fits.
    """
    a = (u.shape[-1] - 2) // 2
    lo, hi = area_range
    area = (lo + (hi - lo) * u[:, :a]) * (height * width)
    log_lo = math.log(aspect_min)
    aspect = jnp.exp(log_lo + (-2.0 * log_lo) * u[:, a:2 * a])
    box_h = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
    box_w = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
    ok = (box_h < height) & (box_w < width)
    first = jnp.argmax(ok, axis=1)[:, None]  # first fitting attempt (0 when none fits)
    fits = jnp.any(ok, axis=1)
    box_h = jnp.where(fits, jnp.take_along_axis(box_h, first, axis=1)[:, 0], 0)
    box_w = jnp.where(fits, jnp.take_along_axis(box_w, first, axis=1)[:, 0], 0)
    # random.randint(0, n) inclusive = floor(u * (n + 1))
    top = jnp.floor(u[:, 2 * a] * (height - box_h + 1)).astype(jnp.int32)
    left = jnp.floor(u[:, 2 * a + 1] * (width - box_w + 1)).astype(jnp.int32)
    return top, left, box_h, box_w, fits


def random_erasing(rng, images, prob: float, *, mode: str = "pixel", area_range=ERASING_AREA,
                   aspect_min: float = ERASING_ASPECT_MIN):
    """Random erasing (Zhong et al. 2020, arXiv:1708.04896) as timm's `RandomErasing` (count 1).

    Each image independently, with probability `prob`, gets one box (geometry: `erasing_boxes`)
    replaced by N(0, 1) noise per pixel and channel ('pixel'), one N(0, 1) colour per channel
    ('rand') or 0 ('const'). Values are in normalized units: apply after mean/std normalization,
    so 0 is the dataset mean. Vectorized and jit-compatible (fixed shapes, a mask per image).

    Args:
      rng: jax PRNG key.
      images: float (B, H, W, C), normalized.
      prob: probability per image, in [0, 1].
      mode: one of ERASING_MODES.
    Returns:
      images float (B, H, W, C), same dtype; pixels outside the boxes unchanged.
    Raises:
      ValueError for an unknown mode.
    """
    if mode not in ERASING_MODES:
        raise ValueError(f"random erasing mode {mode!r} is not one of {ERASING_MODES}")
    b, h, w, c = images.shape
    k_apply, k_box, k_fill = jax.random.split(rng, 3)
    u = jax.random.uniform(k_box, (b, 2 * ERASING_ATTEMPTS + 2))
    top, left, box_h, box_w, fits = erasing_boxes(u, h, w, area_range, aspect_min)
    erase = fits & (jax.random.uniform(k_apply, (b,)) < prob)
    ys = jnp.arange(h)[None, :, None]
    xs = jnp.arange(w)[None, None, :]
    inside = ((ys >= top[:, None, None]) & (ys < (top + box_h)[:, None, None])
              & (xs >= left[:, None, None]) & (xs < (left + box_w)[:, None, None]))
    mask = (inside & erase[:, None, None])[..., None]
    fill_shape = {"pixel": (b, h, w, c), "rand": (b, 1, 1, c), "const": None}[mode]
    if fill_shape is None:
        fill = jnp.zeros((), images.dtype)
    else:
        fill = jax.random.normal(k_fill, fill_shape, jnp.float32).astype(images.dtype)
    return jnp.where(mask, fill, images)


# ----------------------------------------------------------------------------- train-step composition
def batch_augment(data_config, num_classes: int):
    """The train step's on-device augmentation from `config.data`, or None when all are off.

    Returns `(rng, images (B, H, W, C), labels (B,)) -> (images, targets)`: random erasing per
    image first, then mixup/cutmix (targets float32 (B, K) soft labels); without mixing, targets
    are the int labels. The order is the DeiT, ConvNeXt and Swin training code's: timm's
    RandomErasing ends the per-image transform, Mixup runs on the batch in the train loop.
    Images arrive normalized (host pipeline and device_data alike), as RandomErasing expects.
    """
    d = data_config
    erasing_prob = float(d.get("random_erasing_prob", 0.0))
    erasing_mode = d.get("random_erasing_mode", "pixel")
    mixing = d.get("mixup_alpha", 0) > 0 or d.get("cutmix_alpha", 0) > 0
    if erasing_prob <= 0 and not mixing:
        return None

    def augment(rng, images, labels):
        if erasing_prob > 0:
            # A key folded off `rng`: mixing keeps drawing from `rng` itself, as without erasing.
            images = random_erasing(jax.random.fold_in(rng, 1), images, erasing_prob,
                                    mode=erasing_mode)
        if not mixing:
            return images, labels
        return mixup_cutmix(rng, images, labels, num_classes, mixup_alpha=d.mixup_alpha,
                            cutmix_alpha=d.cutmix_alpha,
                            switch_prob=d.get("mixup_switch_prob", 0.5))

    return augment
