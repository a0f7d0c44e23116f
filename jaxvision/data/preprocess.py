"""Decoding, resolution of 'auto' config values, and the per-example train / eval transforms.

An example on its way through the pipeline is `{'image': encoded bytes (any image format),
'label': int}`; `decode` turns the bytes into uint8 (H, W, channels) with the one file -> pixels
decoder (`image_file`); the transforms return float32 (size, size, channels), normalized.
"""

import dataclasses
import math

import numpy as np

from jaxvision.data import augment, image_file
from jaxvision.data._tf import tf

# Per-dataset mean / std in [0, 1] units (per channel).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NORMALIZATION = {
    "imagenet2012": (IMAGENET_MEAN, IMAGENET_STD),
    "imagenette": (IMAGENET_MEAN, IMAGENET_STD),
    "image_folder": (IMAGENET_MEAN, IMAGENET_STD),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "mnist": ((0.1307,), (0.3081,)),
    "mnist5k": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "digits": ((0.3053,), (0.3759,)),  # computed over sklearn's 1,797 digits (x*255/16 rounded)
    "lfw_faces": ((0.3771,), (0.2728,)),  # computed over skimage's 200 lfw_subset images
}
DEFAULT_SIZE = 224  # for datasets whose images have no fixed size


@dataclasses.dataclass(frozen=True)
class Meta:
    """What the transforms need to know about a dataset (cheap: no data is read)."""

    name: str
    image_shape: tuple  # (H, W, C) with None where it varies
    class_names: tuple


@dataclasses.dataclass(frozen=True)
class Resolved:
    """Concrete values of every setting that may be 'auto'/None in config.data."""

    image_size: int
    channels: int
    mean: tuple
    std: tuple
    train_crop: str
    pad_pixels: int
    eval_crop_fraction: float
    native_fixed: bool  # every image of the dataset has one size
    alpha_background: tuple = (255, 255, 255)  # uint8 RGB under transparent pixels


TRAIN_CROPS = ("inception", "random_pad", "center", "resize")


def resolve(cfg, meta: Meta) -> Resolved:
    """Fills in the 'auto'/None values of config.data from the dataset's metadata."""
    h, w, c = meta.image_shape
    fixed = h is not None and w is not None
    size = cfg.image_size or (max(h, w) if fixed else DEFAULT_SIZE)
    if int(size) != size or size < 1:
        raise ValueError(f"config.data.image_size must be a positive number of pixels (or None for "
                         f"the dataset's own size), got {cfg.image_size}")
    channels = cfg.channels or c or 3
    if channels not in (1, 3):
        raise ValueError(f"config.data.channels must be 1 or 3, got {channels}")

    if isinstance(cfg.mean, str) or isinstance(cfg.std, str):
        if str(cfg.mean).lower() == "none" or str(cfg.std).lower() == "none":
            mean, std = (0.0,), (1.0,)
        else:
            raise ValueError("config.data.mean/std must be None (auto), 'none' or numbers")
    elif cfg.mean is None or cfg.std is None:
        mean, std = NORMALIZATION.get(meta.name, (IMAGENET_MEAN, IMAGENET_STD))
        mean = tuple(np.atleast_1d(cfg.mean).tolist()) if cfg.mean is not None else mean
        std = tuple(np.atleast_1d(cfg.std).tolist()) if cfg.std is not None else std
    else:
        mean = tuple(np.atleast_1d(cfg.mean).tolist())
        std = tuple(np.atleast_1d(cfg.std).tolist())
    mean, std = _fit_channels(mean, channels), _fit_channels(std, channels)
    if not all(np.isfinite(mean)) or not all(np.isfinite(v) and v > 0 for v in std):
        raise ValueError(f"config.data.mean must be finite and config.data.std positive (pixel "
                         f"units in [0, 1]), got mean {mean}, std {std}")

    crop = cfg.train_crop
    if crop == "auto":
        crop = "random_pad" if fixed else "inception"
    if crop not in TRAIN_CROPS:
        raise ValueError(f"config.data.train_crop={crop!r}; choose 'auto' or one of {TRAIN_CROPS}")
    pad = cfg.pad_pixels if cfg.pad_pixels is not None else max(1, size // 8)
    frac = cfg.eval_crop_fraction
    if frac is None:
        frac = 1.0 if fixed else 0.875
    if not 0 < frac <= 1:
        raise ValueError(f"config.data.eval_crop_fraction must be in (0, 1], got {frac}")
    try:
        background = image_file.background_rgb(cfg.get("alpha_background", "white"))
    except ValueError as e:
        raise ValueError(f"config.data.alpha_background: {e}") from None
    return Resolved(
        int(size), int(channels), mean, std, crop, int(pad), float(frac), fixed, background
    )


def _fit_channels(values, channels):
    values = tuple(float(v) for v in values)
    if len(values) == channels:
        return values
    if len(values) == 1:
        return values * channels
    if len(values) == 3 and channels == 1:
        return (sum(values) / 3.0,)
    raise ValueError(f"mean/std {values} do not fit {channels} channels")


# ----------------------------------------------------------------------------- decode
def decode(encoded, r: Resolved):
    """Encoded image bytes (string scalar, any format) -> uint8 (H, W, r.channels) tensor, read
    as a person sees it by the one decoder of `jaxvision.data.image_file` (upright, sRGB, alpha
    composited over r.alpha_background)."""
    return image_file.decode_tf(encoded, r.channels, r.alpha_background)


def decode_many(encoded, r: Resolved, height: int, width: int):
    """`decode` of a string (N,) tensor of images of one size -> uint8 (N, height, width,
    r.channels), in one Python call (for datasets whose images all have one size)."""
    return image_file.decode_many_tf(encoded, r.channels, r.alpha_background, height, width)


def _to_unit(image):
    return tf.cast(image, tf.float32) / 255.0


# ----------------------------------------------------------------------------- transforms
def eval_transform(image_uint8, r: Resolved):
    """uint8 (H, W, C) -> float32 (size, size, channels), the evaluation transform."""
    image = augment.to_channels(_to_unit(image_uint8), r.channels)
    image = augment.resize_and_center_crop(image, r.image_size, r.eval_crop_fraction)
    image = tf.clip_by_value(image, 0.0, 1.0)
    image = tf.ensure_shape(image, [r.image_size, r.image_size, r.channels])
    return augment.normalize(image, r.mean, r.std)


def train_transform(image_uint8, seed, r: Resolved, cfg):
    """uint8 (H, W, C) -> float32 (size, size, channels) with the configured random augmentation.

    `seed` int64 (2,) is the element's own stateless seed: the result depends on nothing else.
    """
    seeds = augment.split_seed(seed, 6)
    image = augment.to_channels(_to_unit(image_uint8), r.channels)
    size = r.image_size
    if r.train_crop == "inception":
        image = augment.inception_crop(
            image,
            seeds[0],
            size,
            area_range=(cfg.crop_area_min, 1.0),
            aspect_range=(cfg.crop_aspect_min, cfg.crop_aspect_max),
        )
    elif r.train_crop == "center":
        image = augment.resize_and_center_crop(image, size, r.eval_crop_fraction)
    else:
        image = augment.resize(image, size)
    image = tf.ensure_shape(tf.clip_by_value(image, 0.0, 1.0), [size, size, r.channels])
    if r.train_crop == "random_pad":
        image = augment.random_pad_crop(image, seeds[0], r.pad_pixels)
    if cfg.flip:
        image = augment.random_flip(image, seeds[1])
    if cfg.rotation:
        image = augment.random_rotation(image, seeds[2], float(cfg.rotation))
    if cfg.color_jitter or cfg.hue_jitter:
        image = augment.color_jitter(
            image, seeds[3], float(cfg.color_jitter), float(cfg.hue_jitter)
        )
    if cfg.randaugment_n:
        image = augment.randaugment(image, seeds[4], int(cfg.randaugment_n), cfg.randaugment_m)
    image = tf.ensure_shape(tf.clip_by_value(image, 0.0, 1.0), [size, size, r.channels])
    return augment.normalize(image, r.mean, r.std)


def eval_output_shape(r: Resolved):
    return (r.image_size, r.image_size, r.channels)


def crop_size_for_eval(r: Resolved) -> int:
    """Shorter-side size before the center crop (for documentation / tests)."""
    return int(math.floor(r.image_size / r.eval_crop_fraction + 0.5))
