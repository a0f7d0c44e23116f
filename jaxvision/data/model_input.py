"""Model input from a file or from pixels, exactly as the evaluation pipeline makes it.

`load_for_eval(config.data, path)` is what `predict`, `explain` and the Python API feed a model:
the file is read by the pipelines' own decoder (`image_file.decode`, with the config's channels
and alpha background) and transformed by the pipelines' own `preprocess.eval_transform`, so its
result is bit-identical to the same file's row in an evaluation batch.
"""

from __future__ import annotations

import math

import numpy as np

from jaxvision.data import image_file, preprocess, sources
from jaxvision.data._tf import tf
from jaxvision.data.antialiased_resize import resize_bilinear_antialiased
from jaxvision.data.sources import DataError


def dataset_meta(config_data) -> preprocess.Meta:
    """Name, native image shape and class names of the configured dataset (no data read; a
    bundled dataset is built if needed, an image folder is indexed)."""
    return sources.get_source(config_data).meta


def resolve_config(config_data) -> preprocess.Resolved:
    """Concrete image_size, channels, mean, std, crops of config.data for its dataset."""
    return preprocess.resolve(config_data, dataset_meta(config_data))


def load_image(path: str, *, channels: int = 3, background=image_file.DEFAULT_BACKGROUND
               ) -> np.ndarray:
    """Reads an image file as a person sees it: uint8 numpy (H, W, channels) (`image_file.read`:
    upright, sRGB, transparency composited over `background`).

    Raises DataError naming the file when it is missing, corrupt or not an image.
    """
    try:
        return image_file.read(path, channels=channels, background=background)
    except image_file.ImageFileError as e:
        raise DataError(str(e)) from None


def preprocess_for_eval(config_data, image_uint8, resolved: preprocess.Resolved | None = None
                        ) -> np.ndarray:
    """uint8 (H, W) or (H, W, C) (C in 1, 3, 4) -> float32 numpy (size, size, channels), the
    evaluation pipeline's transform for this config (RGBA composited over its background).
    ``resolved``: the config's concrete values when already known (e.g. from a run directory, so
    that no dataset needs opening)."""
    r = resolved or resolve_config(config_data)
    return _eval_transform(_pixels(image_uint8, r), r)


def load_for_eval(config_data, path: str, resolved: preprocess.Resolved | None = None
                  ) -> np.ndarray:
    """An image file -> float32 numpy (size, size, channels): the model input the evaluation
    pipeline makes of this file, bit for bit. Raises DataError naming a bad file. ``resolved`` as
    in `preprocess_for_eval`."""
    r = resolved or resolve_config(config_data)
    return _eval_transform(load_image(path, channels=r.channels, background=r.alpha_background), r)


def _pixels(image_uint8, r: preprocess.Resolved) -> np.ndarray:
    try:
        return image_file.from_array(image_uint8, channels=r.channels, background=r.alpha_background)
    except image_file.ImageFileError as e:
        raise DataError(f"preprocess_for_eval: {e}") from None


def _eval_transform(pixels: np.ndarray, r: preprocess.Resolved) -> np.ndarray:
    if pixels.ndim == 3 and pixels.shape[-1] == r.channels:
        return eval_transform_numpy(pixels, r)
    return preprocess.eval_transform(tf.constant(pixels), r).numpy()


def eval_transform_numpy(pixels: np.ndarray, r: preprocess.Resolved) -> np.ndarray:
    """``preprocess.eval_transform`` of uint8 (H, W, r.channels) in NumPy, bit for bit: the same
    float32 operations in the same order (the resize is TF's own, ported exactly), without
    importing TensorFlow (3-5 CPU seconds that predict and explain need not pay). A batch
    (N, H, W, r.channels) of one size gives (N, size, size, channels), each row bit for bit."""
    h, w = pixels.shape[-3:-1]
    size = r.image_size
    image = pixels.astype(np.float32) / np.float32(255.0)
    if r.eval_crop_fraction >= 1.0:
        image = resize_bilinear_antialiased(image, size, size)
    else:
        # augment.resize_shorter's size, in float32 and rounded half to even as TF computes it,
        # then augment.center_crop.
        shorter = np.float32(math.floor(size / r.eval_crop_fraction + 0.5))
        scale = shorter / np.float32(min(h, w))
        nh, nw = (max(1, int(np.round(np.float32(n) * scale))) for n in (h, w))
        image = resize_bilinear_antialiased(image, nh, nw)
        top, left = (nh - size) // 2, (nw - size) // 2
        image = image[..., top:top + size, left:left + size, :]
    image = np.clip(image, np.float32(0.0), np.float32(1.0))
    return (image - np.asarray(r.mean, np.float32)) / np.asarray(r.std, np.float32)
