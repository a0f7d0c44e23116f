"""A run's input preprocessing, resolved from its run directory alone (no dataset opened).

``predict`` and ``explain`` must work offline on any run directory, including converted ones
whose ``config.data.name`` names a dataset that is not on this machine. What the evaluation
transform needs is ``jaxvision.data.preprocess.resolve(config.data, meta)``; ``meta`` (native
image shape, class names) is taken here from what the run and the code already know:

- every preprocessing key set in ``config.data`` (converted runs record all of them): nothing else;
- bundled datasets: the builder's declared shape and class names (no build);
- TFDS datasets: the builder's declared features (``tfds.builder(name).info``; no download);
- image folders: RGB of varying size, as ``data.sources.FolderSource`` declares (the folder
  itself may be gone).
"""

from __future__ import annotations

import contextlib
import logging

from jaxvision import data
from jaxvision.data import bundled_info, preprocess

# Keys of config.data that, once all set, fix the evaluation transform without the dataset.
SELF_CONTAINED_KEYS = ("image_size", "channels", "mean", "std", "eval_crop_fraction")


def run_meta(run) -> data.Meta:
    """``data.Meta`` of the dataset ``run`` was trained on, without reading or building it.

    Raises ``data.DataError`` when neither the run nor the dataset's declaration says enough
    (a TFDS name this TFDS version does not know, and no recorded preprocessing).
    """
    cfg = run.config.data
    names = tuple(getattr(run, "class_names", None) or ())
    shape = tuple(run.image_shape) if getattr(run, "image_shape", None) else (None, None, None)
    if cfg.name in bundled_info.SHAPES:  # declared without importing TensorFlow
        return data.Meta(cfg.name, bundled_info.SHAPES[cfg.name],
                         names or bundled_info.CLASS_NAMES[cfg.name])
    if self_contained(cfg):
        return data.Meta(cfg.name, shape, names)
    if cfg.name == "image_folder":
        # What data.sources.FolderSource declares: RGB, sizes vary (the folder is not read).
        return data.Meta(cfg.name, (None, None, 3), names)
    return _tfds_meta(cfg, names)


def self_contained(cfg) -> bool:
    """True when ``cfg`` (a run's config.data) sets every key of the evaluation transform."""
    return all(cfg.get(k) is not None for k in SELF_CONTAINED_KEYS)


def native_image_hw(run, meta: data.Meta | None = None) -> tuple[int, int] | None:
    """(H, W) that every image of ``run``'s dataset has, as the dataset declares it (``meta``:
    ``run_meta(run)`` when already known); None when sizes vary (image folders) or the run records
    only its preprocessing (converted runs: ``run.image_shape`` is the model input, not the
    images')."""
    meta = meta or run_meta(run)
    cfg = run.config.data
    if self_contained(cfg) and cfg.name not in bundled_info.SHAPES:
        return None
    h, w = meta.image_shape[:2]
    return (int(h), int(w)) if h is not None and w is not None else None


def _tfds_meta(cfg, names: tuple) -> data.Meta:
    from jaxvision.data._tf import tfds

    # An unprepared dataset's builder warns that its folder has no dataset_info.json: expected.
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        builder = tfds.builder(cfg.name, data_dir=cfg.data_dir)
        features = builder.info.features
        keys = builder.info.supervised_keys or ("image", "label")
        h, w, c = (tuple(features[keys[0]].shape) + (None, None, None))[:3]
    except Exception as e:  # noqa: BLE001 - unknown name, no image feature, ...
        raise data.DataError(
            f"cannot tell the input size of dataset {cfg.name!r} offline ({type(e).__name__}: "
            f"{e}); set --config.data.image_size, channels, mean, std and eval_crop_fraction"
        ) from None
    finally:
        absl_logger.setLevel(level)
    return data.Meta(cfg.name, (h, w, c if c in (1, 3) else 3), names)


def resolve_run(run) -> data.Resolved:
    """Concrete image size, channels, mean/std and eval crop of ``run``'s evaluation transform,
    the same values ``data.build(run.config.data, ...)`` would resolve."""
    return preprocess.resolve(run.config.data, run_meta(run))


def pin_preprocessing(run) -> None:
    """Write ``run``'s resolved evaluation transform (``resolve_run``: image size, channels,
    mean/std, eval crop) into ``run.config.data``, so that evaluating or exporting the run on
    other data (``--config.data.name/path=...``) feeds the model what it was trained on, not that
    dataset's defaults (an mnist5k run on a folder of digits would otherwise get ImageNet's
    mean/std and a 0.875 crop). Keys set afterwards (``--config.data.mean=...``) still win."""
    r = resolve_run(run)
    cfg = run.config.data
    values = {"image_size": r.image_size, "channels": r.channels, "mean": tuple(r.mean),
              "std": tuple(r.std), "eval_crop_fraction": r.eval_crop_fraction}
    with cfg.unlocked() if hasattr(cfg, "unlocked") else contextlib.nullcontext():
        for key, value in values.items():
            cfg[key] = value
