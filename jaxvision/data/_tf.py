"""TensorFlow import for the input pipeline, kept off every GPU.

TensorFlow only decodes and augments on the host; if it saw a GPU it would grab its memory before
JAX does. Every module of `jaxvision.data` imports TensorFlow through here.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

try:
    tf.config.set_visible_devices([], "GPU")
except RuntimeError:  # TF already initialised its devices elsewhere; they stay as they are.
    pass

import tensorflow_datasets as tfds  # noqa: E402

__all__ = ["tf", "tfds"]
