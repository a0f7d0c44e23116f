"""The evaluation transform inside an exported model, as TF ops or as fixed linear maps.

Two forms of the *same* transform (``jaxvision.data.preprocess.eval_transform``: RGB -> model
channels, bilinear antialiased resize and center crop, clip to [0, 1], per-channel mean/std):

* ``tf_eval_batch``: the evaluation pipeline's own TensorFlow ops mapped over a batch. Any image
  size; used by the SavedModel, whose runtime is TensorFlow.
* ``FixedSizeTransform``: for one input size (H, W) the transform is affine in the pixels, so it
  is captured as three matrices (channel mix, row resize, column resize) plus mean/std. The
  matrices are *measured* by running the pipeline's own ``augment.to_channels`` and
  ``augment.resize_and_center_crop`` on basis images, never re-derived, so the result equals
  ``eval_transform`` up to float rounding (~5e-7). Needed where ``tf.image.resize(antialias=True)``
  (TF's ``ScaleAndTranslate``) does not exist: TFLite (neither builtin nor Flex) and StableHLO.
  Matmuls also quantize well, so the int8 model keeps its preprocessing inside.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from jaxvision.data import augment, preprocess
from jaxvision.data._tf import tf

INPUT_CHANNELS = 3  # exported models take RGB, what ``jaxvision.data.load_image`` returns


def tf_eval_batch(images_uint8, r: preprocess.Resolved):
    """uint8 (N, H, W, 3) tf tensor -> float32 (N, S, S, C): ``eval_transform`` per image."""
    size = preprocess.eval_output_shape(r)
    return tf.map_fn(lambda im: preprocess.eval_transform(im, r), images_uint8,
                     fn_output_signature=tf.TensorSpec(size, tf.float32))


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity (jit's cache key)
class FixedSizeTransform:
    """``eval_transform`` for uint8 RGB images of one size, as matrices.

    channel_matrix: float32 (3, C) RGB -> model channels (``augment.to_channels``).
    row_matrix: float32 (S, H), col_matrix: float32 (S, W): resize + center crop per axis.
    mean, std: float32 (C,) in [0, 1] units.
    """

    input_hw: tuple[int, int]
    channel_matrix: np.ndarray
    row_matrix: np.ndarray
    col_matrix: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    def __call__(self, images_uint8):
        """uint8 (N, H, W, 3) -> float32 (N, S, S, C), traceable by jax (and so exportable)."""
        # Products with reciprocals, not divisions: TFLite's int8 DIV is far less accurate than
        # MUL, and the difference in float is one rounding (~1e-7).
        x = jnp.asarray(images_uint8).astype(jnp.float32) * np.float32(1 / 255)
        x = x @ self.channel_matrix  # (N, H, W, C)
        # Each resize is a product with a constant matrix over the last axis, which TFLite
        # lowers to FULLY_CONNECTED; an einsum over both axes becomes a BATCH_MATMUL whose int8
        # kernel destroys the image.
        x = jnp.transpose(x, (0, 3, 2, 1)) @ self.row_matrix.T  # (N, C, W, S)
        x = jnp.swapaxes(x, 2, 3) @ self.col_matrix.T  # (N, C, S, S)
        x = jnp.transpose(x, (0, 2, 3, 1))  # (N, S, S, C)
        return (jnp.clip(x, 0.0, 1.0) - self.mean) * (1 / self.std)


def fixed_size_transform(r: preprocess.Resolved, input_hw: tuple[int, int]) -> FixedSizeTransform:
    """Measures the evaluation transform's linear maps for (H, W) inputs (see module docstring)."""
    h, w = (int(v) for v in input_hw)
    if h < 1 or w < 1:
        raise ValueError(f"input size must be positive, got {h}x{w}")
    eye = np.eye(INPUT_CHANNELS, dtype=np.float32).reshape(INPUT_CHANNELS, 1, INPUT_CHANNELS)
    channel_matrix = augment.to_channels(tf.constant(eye), r.channels).numpy()
    return FixedSizeTransform(
        input_hw=(h, w),
        channel_matrix=channel_matrix.reshape(INPUT_CHANNELS, r.channels),
        row_matrix=_axis_matrix(r, h, w, axis=0),
        col_matrix=_axis_matrix(r, h, w, axis=1),
        mean=np.asarray(r.mean, np.float32),
        std=np.asarray(r.std, np.float32),
    )


def _axis_matrix(r: preprocess.Resolved, h: int, w: int, axis: int) -> np.ndarray:
    """(S, H) or (S, W): channel k of the probe is the indicator of row (column) k; the resize is
    separable with rows of weights summing to 1, so output channel k is that row's weights.
    Probed in chunks of channels to bound memory on large inputs."""
    n = (h, w)[axis]
    parts = []
    for start in range(0, n, _PROBE_CHUNK):
        idx = np.arange(start, min(n, start + _PROBE_CHUNK))
        basis = np.zeros((h, w, len(idx)), np.float32)
        if axis == 0:
            basis[idx, :, idx - start] = 1.0
        else:
            basis[:, idx, idx - start] = 1.0
        out = augment.resize_and_center_crop(tf.constant(basis), r.image_size,
                                             r.eval_crop_fraction).numpy()
        parts.append(out[:, 0, :] if axis == 0 else out[0, :, :])
    return np.ascontiguousarray(np.concatenate(parts, axis=1))


_PROBE_CHUNK = 64
