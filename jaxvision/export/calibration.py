"""Images of a dataset split as the exported models take them, and the int8 accuracy check.

Calibration (int8) and the accuracy measurement read the split's encoded images through the data
source and decode them with the one decoder (``image_file.decode``) to RGB uint8, as
``jaxvision.data.load_image`` reads a file. An image whose size differs from the fixed input size
is resized to it (the pipeline's antialiased bilinear ``augment.resize``, rounded to uint8).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from jaxvision.data import augment, image_file, sources
from jaxvision.data._tf import tf
from jaxvision.evaluation.predictor import predict_images
from jaxvision.evaluation.run_input import resolve_run
from jaxvision.export.preprocessing import INPUT_CHANNELS


def split_pixels(config_data, split: str, input_hw: Sequence[int], limit: int | None = None,
                 shuffle_seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (M, H, W, 3) images and int64 (M,) labels of ``split`` (at most ``limit``; a
    seeded shuffle first when ``shuffle_seed`` is given, so calibration sees all classes)."""
    source = sources.get_source(config_data)
    local = source.local(split, 0, 1)
    ds = local.raw
    if shuffle_seed is not None:
        ds = ds.shuffle(min(local.num_total, 16 * (limit or local.num_total)), seed=shuffle_seed)
    ds = ds.map(local.load)
    if limit is not None:
        ds = ds.take(int(limit))
    hw = tuple(int(v) for v in input_hw)
    background = image_file.background_rgb(config_data.get("alpha_background", "white"))
    images, labels = [], []
    for ex in ds.as_numpy_iterator():
        image = image_file.decode(ex["image"], channels=INPUT_CHANNELS, background=background)
        if tuple(image.shape[:2]) != hw:
            image = tf.cast(tf.round(tf.clip_by_value(augment.resize(image, hw), 0, 255)), tf.uint8)
        images.append(np.asarray(image))
        labels.append(int(ex["label"]))
    if not images:
        raise ValueError(f"split {split!r} of {config_data.name!r} has no images")
    return np.stack(images), np.asarray(labels, np.int64)


def jaxvision_probabilities(run, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """float64 (M, K): ``jaxvision.predict``'s own path (``preprocess_for_eval`` per image with
    the preprocessing the run directory records, then ``predict_images``) on uint8 RGB images."""
    from jaxvision import data

    resolved = resolve_run(run)  # as predict: from the run directory, no dataset opened
    x = np.stack([data.preprocess_for_eval(run.config.data, im, resolved) for im in images])
    return predict_images(run, x, batch_size=batch_size)


def int8_accuracy(run, runner: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
                  labels: np.ndarray, batch_size: int = 64) -> dict[str, float]:
    """Top-1 of the float model (jaxvision) and of ``runner`` on the same images, the drop
    (float - int8, in accuracy points of [0, 1]) and the top-1 agreement between the two."""
    ref = jaxvision_probabilities(run, images, batch_size).argmax(-1)
    got = np.concatenate([runner(images[i:i + batch_size]).argmax(-1)
                          for i in range(0, len(images), batch_size)])
    float_top1, int8_top1 = float(np.mean(ref == labels)), float(np.mean(got == labels))
    return {"num_images": int(len(labels)), "float_top1": float_top1, "int8_top1": int8_top1,
            "top1_drop": float_top1 - int8_top1, "top1_agreement": float(np.mean(ref == got))}
