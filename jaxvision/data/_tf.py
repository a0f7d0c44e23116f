"""TensorFlow for the input pipeline: kept off every GPU, and imported on first use.

TensorFlow only decodes and augments on the host; if it saw a GPU it would grab its memory before
JAX does. Every module of `jaxvision.data` imports TensorFlow through here, as
``from jaxvision.data._tf import tf, tfds``. Those names are stand-ins that import the real
modules on their first attribute access: importing TensorFlow and TFDS costs 3-5 CPU seconds,
which commands that never build a tf.data pipeline (``predict`` on a bundled-dataset run, say)
should not pay. :func:`load` imports both now.
"""

import contextlib
import os
import sys
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__all__ = ["load", "tf", "tfds"]


def _quietly():
    """TensorFlow's C++ start-up banners filtered from stderr, as the commands filter them (a
    command may import TensorFlow only mid-run); ``--verbosity`` keeps them."""
    from jaxvision import quiet_stderr

    if quiet_stderr.verbosity_requested(sys.argv) or not hasattr(sys.stderr, "buffer"):
        return contextlib.nullcontext()
    return quiet_stderr.filtered_stderr()


def _import_tensorflow():
    with _quietly():
        import tensorflow

    try:
        tensorflow.config.set_visible_devices([], "GPU")
    except RuntimeError:  # TF already initialised its devices elsewhere; they stay as they are.
        pass
    return tensorflow


def _import_tfds():
    tf._module()  # TensorFlow first, so that it is kept off the GPU before TFDS starts it
    with _quietly():
        import tensorflow_datasets

    return tensorflow_datasets


_MODULE_DUNDERS = ("__version__", "__file__", "__path__", "__all__")


class _OnFirstUse(types.ModuleType):
    """A module stand-in: the first attribute read imports the module and reads from it."""

    def __init__(self, name: str, importer):
        super().__init__(name)
        self._importer = importer
        self._loaded = None

    def _module(self):
        if self._loaded is None:
            self._loaded = self._importer()
        return self._loaded

    def __getattr__(self, attr: str):
        if attr.startswith("__") and attr.endswith("__") and attr not in _MODULE_DUNDERS:
            raise AttributeError(attr)  # copy / pickle / inspect probes: not a reason to import
        return getattr(self._module(), attr)

    def __dir__(self):
        return dir(self._module())


tf = _OnFirstUse("tensorflow", _import_tensorflow)
tfds = _OnFirstUse("tensorflow_datasets", _import_tfds)


def load() -> None:
    """Import TensorFlow (kept off the GPU) and TFDS now."""
    tfds._module()
