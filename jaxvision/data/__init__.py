"""jaxvision.data: input pipelines (TFDS, bundled datasets, image folders) and augmentation.

pipe = data.build(config.data, 'train', global_batch_size=256, train=True, seed=0)
for batch in pipe: ...   # {'image': f32 (B/P, H, W, C), 'label': i32 (B/P,), 'mask': bool}
"""

import lazy_loader as _lazy

# Lazy: importing jaxvision.data (e.g. for default_config) must not import TensorFlow; the
# submodules that need it load on first use.
__getattr__, __dir__, _ = _lazy.attach(
    __name__,
    submodules=["augment", "balance", "bundled", "preprocess", "sources"],
    submod_attrs={
        "balance": ["class_weights", "weights_from_counts"],
        "bundled": ["BUNDLED"],
        "config": ["default_config"],
        "pipeline": ["Pipeline", "PipelineInfo", "build"],
        "preprocess": ["Meta", "Resolved"],
        "sources": ["DataError"],
    },
)


def dataset_meta(config_data):
    """Name, native image shape and class names (a ``Meta``) of the configured dataset (no data
    read; a bundled dataset is built if needed, an image folder is indexed)."""
    from jaxvision.data import sources

    return sources.get_source(config_data).meta


def resolve_config(config_data):
    """Concrete image_size, channels, mean, std, crops (a ``Resolved``) of config.data."""
    from jaxvision.data import preprocess

    return preprocess.resolve(config_data, dataset_meta(config_data))


def load_image(path: str):
    """Reads an image file as uint8 numpy (H, W, 3) (RGB; gray and RGBA converted).

    Raises DataError naming the file when it is missing, corrupt or not an image.
    """
    import numpy as np
    from PIL import Image

    from jaxvision.data.sources import DataError

    try:
        with Image.open(path) as im:
            im.load()
            rgb = im.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image file {path!r} does not exist") from None
    except Exception as e:
        raise DataError(f"cannot read {path!r} as an image ({type(e).__name__}: {e})") from None
    return np.asarray(rgb, dtype=np.uint8)


def preprocess_for_eval(config_data, image_uint8):
    """uint8 (H, W, C) (C in 1, 3, 4) -> float32 numpy (size, size, channels), exactly the
    evaluation pipeline's transform for this config."""
    import numpy as np

    from jaxvision.data import preprocess
    from jaxvision.data._tf import tf
    from jaxvision.data.sources import DataError

    r = resolve_config(config_data)
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
