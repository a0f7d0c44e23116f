"""Serialized StableHLO (``jax.export``) for any XLA runtime: CPU, CUDA and TPU in one file.

The exported function is the fixed-size pixels -> probabilities function of
``Servable.pixels_to_logits`` and a softmax (the evaluation transform as matmuls: StableHLO has no
antialiased resize for a symbolic image size), with the parameters embedded as constants and a
symbolic batch dimension. ``jax.export.deserialize(bytearray(open(path, 'rb').read())).call(x)``
runs it; its calling convention is JAX's (see ``jax.export``'s compatibility guarantees).

Input: uint8 (N, H, W, 3) RGB at the exported size. Output: float32 probabilities (N, K). The
class names go to ``<output stem>.labels.txt``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax import export

from jaxvision.export.preprocessing import INPUT_CHANNELS
from jaxvision.export.serving import Servable, portable_convolutions

EXPORT_PLATFORMS = ("cpu", "cuda", "tpu")


def export_stablehlo(servable: Servable, input_hw: Sequence[int]) -> bytes:
    """Serialized ``jax.export.Exported`` of uint8 (b, H, W, 3) -> float32 (b, K)."""
    h, w = (int(v) for v in input_hw)
    f = servable.pixels_to_logits((h, w))
    variables = servable.variables
    (b,) = export.symbolic_shape("b")
    spec = jax.ShapeDtypeStruct((b, h, w, INPUT_CHANNELS), np.uint8)
    with portable_convolutions():
        exported = export.export(jax.jit(lambda x: jax.nn.softmax(f(variables, x), axis=-1)),
                                 platforms=EXPORT_PLATFORMS)(spec)
    return exported.serialize()


def load_stablehlo(path: str):
    """``f(uint8 (N, H, W, 3)) -> float32 (N, K)`` numpy, run by ``jax.export.deserialize``."""
    with open(path, "rb") as fh:
        exported = export.deserialize(bytearray(fh.read()))
    call = jax.jit(exported.call)

    def run(images: np.ndarray) -> np.ndarray:
        return np.asarray(call(np.asarray(images, np.uint8)))

    run.input_hw = tuple(int(d) for d in exported.in_avals[0].shape[1:3])
    return run
