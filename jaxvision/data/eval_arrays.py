"""Evaluation batches of a bundled dataset's split in NumPy, without TensorFlow.

``build(config.data, split, global_batch_size=B)`` yields what ``data.build(config.data, split,
global_batch_size=B, train=False)`` yields for the same split: every example once, each one's
model input bit for bit the pipeline's (the uint8 pixels of ``bundled_arrays``, which the TFDS
builders write, through ``model_input.eval_transform_numpy``, the evaluation transform ported
exactly), then rows of zeros with ``mask`` False up to whole batches, so the model compiles once
for every batch, the last one included. Only the order of the examples differs (TFDS orders its
records by a hash of their keys; here they follow the package), which no metric depends on.

It applies to one process reading a bundled dataset's ``train`` / ``validation`` / ``test`` (or
``auto``) split; anything else (TFDS slicing like ``'test[:50%]'``, several processes, image
folders, TFDS datasets, ``tfds.testing.mock_data``) returns None and the caller builds the tf.data
pipeline. For the default job this turns ``evaluate``'s 3-5 CPU seconds of importing TensorFlow
and building tf.data into a ~10 ms read of a cached array file.
"""

from __future__ import annotations

import logging
import sys

import numpy as np

from jaxvision.data import bundled_arrays, bundled_info, model_input, preprocess
from jaxvision.data import config as data_config
from jaxvision.data.pipeline_info import PipelineInfo

__all__ = ["ArrayPipeline", "build"]

log = logging.getLogger(__name__)


class ArrayPipeline:
    """An evaluation pipeline over in-memory uint8 pixels: ``info`` (``PipelineInfo``), ``len()``
    batches of {'image': float32 (B, H, W, C), 'label': int32 (B,), 'mask': bool (B,)}, each batch
    transformed when it is reached (a split at 224 px would not fit in memory at once);
    re-iterable (each pass gives the same batches)."""

    def __init__(self, pixels: np.ndarray, labels: np.ndarray, resolved: preprocess.Resolved,
                 info: PipelineInfo):
        self.pixels, self.labels, self.resolved, self.info = pixels, labels, resolved, info

    def __len__(self) -> int:
        return -(-len(self.labels) // self.info.local_batch_size)

    def __iter__(self):
        batch = self.info.local_batch_size
        for start in range(0, len(self) * batch, batch):
            images = model_input.eval_transform_numpy(self.pixels[start:start + batch],
                                                      self.resolved)
            labels = self.labels[start:start + batch]
            mask = np.arange(batch) < len(labels)
            pad = batch - len(labels)
            if pad:
                images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), np.float32)])
                labels = np.concatenate([labels, np.zeros(pad, np.int32)])
            yield {"image": images, "label": labels, "mask": mask}


def _mocked() -> bool:
    """True inside ``tfds.testing.mock_data`` (it needs TFDS imported, so TFDS's absence says no)."""
    if "tensorflow_datasets" not in sys.modules:
        return False
    from jaxvision.data import sources

    return sources._mocked()


def _split_name(split: str) -> str | None:
    if split == "auto":  # every bundled dataset has a validation split
        return "validation"
    return split if split in bundled_arrays.SPLITS else None


def build(config_data, split: str, *, global_batch_size: int,
          process_count: int | None = None) -> ArrayPipeline | None:
    """The evaluation pipeline of ``split`` of a bundled dataset as NumPy batches, or None when
    this path does not apply (see the module doc) and ``data.build`` must be used."""
    cfg = config_data
    name = _split_name(split)
    if cfg.name not in bundled_info.SHAPES or name is None or global_batch_size <= 0:
        return None
    if process_count is None:
        import jax

        process_count = jax.process_count()
    if process_count != 1 or _mocked():
        return None
    data_config.check_cache(cfg)  # what data.build checks, so both paths refuse the same
    meta = preprocess.Meta(cfg.name, bundled_info.SHAPES[cfg.name],
                           bundled_info.CLASS_NAMES[cfg.name])
    r = preprocess.resolve(cfg, meta)
    try:
        pixels, labels = bundled_arrays.split_arrays(cfg.name, name)
    except Exception as e:  # noqa: BLE001 - e.g. the source package is gone: TFDS's records may
        # still be there, and the tf.data path reports what is missing if they are not
        log.debug("reading %s from its package failed (%s: %s); using tf.data", cfg.name,
                  type(e).__name__, e)
        return None
    if pixels.shape[-1] != r.channels:
        if (pixels.shape[-1], r.channels) != (1, 3):
            return None
        pixels = np.repeat(pixels, 3, axis=-1)  # gray -> RGB, as the decoder converts 'L'
    info = PipelineInfo(
        num_classes=len(meta.class_names), class_names=list(meta.class_names),
        num_examples=len(labels), image_shape=preprocess.eval_output_shape(r), split=name,
        local_batch_size=global_batch_size, num_local_examples=len(labels), mean=r.mean,
        std=r.std)
    return ArrayPipeline(pixels, labels.astype(np.int32), r, info)
