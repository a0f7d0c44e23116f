"""The input check every registered model shares: NHWC float images, or one clear error.

``models.create`` returns the family's module class extended by :func:`checked_class`: its
``__call__`` checks the input, then runs the family's own ``__call__`` unchanged (same variables,
same paths, same numbers). Mistakes it names, at ``init`` and at ``apply``:

- not 4-D: images are (N, H, W, C);
- an integer dtype (uint8 pixels): models take float input, scaled to [0, 1] and normalized as
  the run's ``config.data.mean/std`` (``jaxvision.data.preprocess_for_eval`` does both);
- NCHW layout (N, C, H, W) with C in {1, 3}: transpose with ``x.transpose(0, 2, 3, 1)``;
- at ``apply``, variables made for another channel count or size (Flax's ScopeParamShapeError):
  the error names the input shape and the NHWC convention.
"""

from __future__ import annotations

import functools

import flax.errors
import jax.numpy as jnp

IMAGE_CHANNELS = (1, 3, 4)  # gray, RGB, RGBA: what a channel axis of an image holds


class InputLayoutError(ValueError):
    """Input a model cannot take (layout, dtype or channels); the message names the fix."""


def check_images(x, model_name: str) -> None:
    """Raise InputLayoutError unless ``x`` looks like float NHWC images."""
    shape = tuple(getattr(x, "shape", ()))
    if len(shape) != 4:
        raise InputLayoutError(
            f"{model_name} takes images as NHWC (N, H, W, C) float arrays; got shape {shape}. "
            "Add the batch axis with x[None] for a single image.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise InputLayoutError(
            f"{model_name} takes NHWC float input scaled to [0, 1] and normalized (config.data."
            f"mean/std); got {x.dtype} of shape {shape}. Use jaxvision.data.preprocess_for_eval, "
            "or (x / 255.0 - mean) / std.")
    if shape[1] in IMAGE_CHANNELS[:2] and shape[3] not in IMAGE_CHANNELS and shape[3] > shape[1]:
        raise InputLayoutError(
            f"{model_name} takes NHWC (N, H, W, C) float input; got shape {shape}, which looks "
            f"like NCHW ({shape[1]} channels of {shape[2]}x{shape[3]}). Transpose it: "
            "x.transpose(0, 2, 3, 1).")


@functools.cache
def checked_class(cls: type) -> type:
    """A subclass of Linen module ``cls`` whose ``__call__(x, ...)`` runs :func:`check_images`
    first and turns a variables/input shape mismatch into an InputLayoutError."""

    def __call__(self, x, *args, **kwargs):
        check_images(x, cls.__name__)
        try:
            return super(checked, self).__call__(x, *args, **kwargs)
        except flax.errors.ScopeParamShapeError as e:
            raise InputLayoutError(
                f"{cls.__name__}: the variables do not fit input of shape {tuple(x.shape)} "
                f"(NHWC: {x.shape[-1]} channels, {x.shape[1]}x{x.shape[2]} pixels): "
                f"{str(e).split(' (https')[0].rstrip('.')}. Give NHWC float images with the channels (and, "
                "for models with a fixed grid, the size) the variables were made for."
            ) from None

    checked = type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__,
                                          "__qualname__": cls.__qualname__,
                                          "__doc__": cls.__doc__})
    return checked
