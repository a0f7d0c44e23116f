"""jaxvision.data: input pipelines (TFDS, bundled datasets, image folders) and augmentation.

pipe = data.build(config.data, 'train', global_batch_size=256, train=True, seed=0)
for batch in pipe: ...   # {'image': f32 (B/P, H, W, C), 'label': i32 (B/P,), 'mask': bool}
"""

from jaxvision.data import augment, balance, bundled, preprocess, sources
from jaxvision.data.balance import class_weights, weights_from_counts
from jaxvision.data.bundled import BUNDLED
from jaxvision.data.config import default_config
from jaxvision.data.pipeline import Pipeline, PipelineInfo, build
from jaxvision.data.preprocess import Meta, Resolved
from jaxvision.data.sources import DataError


def dataset_meta(config_data) -> Meta:
    """Name, native image shape and class names of the configured dataset (no data read; a
    bundled dataset is built if needed, an image folder is indexed)."""
    return sources.get_source(config_data).meta


def resolve_config(config_data) -> Resolved:
    """Concrete image_size, channels, mean, std, crops of config.data for its dataset."""
    return preprocess.resolve(config_data, dataset_meta(config_data))


def load_image(path: str):
    """Reads an image file as uint8 numpy (H, W, 3) (RGB; gray and RGBA converted).

    Raises DataError naming the file when it is missing, corrupt or not an image.
    """
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            rgb = im.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image file {path!r} does not exist") from None
    except Exception as e:
        raise DataError(f"cannot read {path!r} as an image ({type(e).__name__}: {e})") from None
    return np.asarray(rgb, dtype=np.uint8)


def preprocess_for_eval(config_data, image_uint8, resolved: Resolved | None = None):
    """uint8 (H, W, C) (C in 1, 3, 4) -> float32 numpy (size, size, channels), exactly the
    evaluation pipeline's transform for this config. ``resolved``: the config's concrete values
    when already known (e.g. from a run directory, so that no dataset needs opening)."""
    import numpy as np

    from jaxvision.data._tf import tf

    r = resolved or resolve_config(config_data)
    image = np.asarray(image_uint8)
    if image.ndim == 2:
        image = image[..., None]
    if image.dtype != np.uint8:
        raise DataError(f"preprocess_for_eval expects uint8 pixels, got {image.dtype}")
    return preprocess.eval_transform(tf.constant(image), r).numpy()


__all__ = [
    "BUNDLED",
    "DataError",
    "Meta",
    "Pipeline",
    "PipelineInfo",
    "Resolved",
    "augment",
    "balance",
    "build",
    "bundled",
    "class_weights",
    "dataset_meta",
    "default_config",
    "load_image",
    "preprocess",
    "preprocess_for_eval",
    "resolve_config",
    "sources",
    "weights_from_counts",
]
