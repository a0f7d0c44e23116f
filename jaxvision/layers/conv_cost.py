"""Predicted time of a dense bf16 k x k convolution pass on the CPU, XLA's convolution vs per-tap
matmuls (``jaxvision.layers.tap_conv``), and the choice between them.

The model, per pass (forward, input gradient, weight gradient) and per lowering, is linear in
three work measures of the shape plus a constant::

    ms = a * GFLOP + b * io + c * tap_io + d           (a, b, c, d >= 0)

* ``GFLOP`` = 2 N Ho Wo kh kw C F / 1e9, the products (the same for all three passes);
* ``io`` = N (H W C + Ho Wo F) / 1e6, the input and output elements (millions) read and written
  once;
* ``tap_io`` = kh kw N Ho Wo (C + F) / 1e6, what a pass that visits every tap separately moves
  (each tap's slice and its product).

The coefficients are fitted (non-negative least squares, ``fit``) to times measured once on the
machine the table describes, by ``python -m benchmarks.conv_cost_table``: ResNet-style shapes
(3x3, 5x5, 7x7/2, strides 1 and 2, 16-512 channels, 7-112 px) at batch 16. The committed table
is ``conv_cost_table.json`` beside this module (measured in process CPU milliseconds on the
2-core AMD EPYC with AVX512-BF16, no AMX, this project runs its CI on); ``python -m benchmarks.conv_cost_table --out user`` measures the
running machine and writes ``$XDG_CACHE_HOME/jaxvision/conv_cost_table.json``, which then takes
precedence. ``JAXVISION_TAP_CONV`` = ``auto`` (the model) | ``taps`` | ``xla`` overrides the
choice for every shape (benchmarks and tests use it).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from typing import NamedTuple

from jaxvision import env_settings, user_cache

__all__ = ["ConvShape", "PASSES", "choose", "features", "fit", "forced_choice", "load_table",
           "predict_ms"]

PASSES = ("forward", "input_grad", "weight_grad")
LOWERINGS = ("xla", "taps")
ENV_VAR = "JAXVISION_TAP_CONV"
CHOICES = env_settings.CHOICES[ENV_VAR][0]
TABLE_NAME = "conv_cost_table.json"
_forced: list[str] = []


class ConvShape(NamedTuple):
    """A dense convolution NHWC (n, h, w, c) -> (n, ho, wo, f) with a (kh, kw) kernel."""

    n: int
    h: int
    w: int
    c: int
    f: int
    kh: int
    kw: int
    ho: int
    wo: int


def features(s: ConvShape) -> list[float]:
    """[GFLOP, io, tap_io, 1] of a shape (see the module docstring)."""
    taps = s.kh * s.kw
    return [
        2 * s.n * s.ho * s.wo * taps * s.c * s.f / 1e9,
        s.n * (s.h * s.w * s.c + s.ho * s.wo * s.f) / 1e6,
        taps * s.n * s.ho * s.wo * (s.c + s.f) / 1e6,
        1.0,
    ]


def fit(rows: list[dict]) -> dict[str, dict[str, list[float]]]:
    """Coefficients ``{pass: {lowering: [a, b, c, d]}}`` fitted by non-negative least squares
    to measured ``rows`` (each ``{"shape": [n, h, w, c, f, kh, kw, ho, wo], "ms": {pass:
    {lowering: ms}}}``). Relative errors are minimized (each row weighted by 1 / its time), so
    small and large layers count alike."""
    import numpy as np
    from scipy.optimize import nnls

    coef: dict[str, dict[str, list[float]]] = {}
    for p in PASSES:
        coef[p] = {}
        for low in LOWERINGS:
            a = np.array([features(ConvShape(*r["shape"])) for r in rows])
            t = np.array([r["ms"][p][low] for r in rows])
            sol, _ = nnls(a / t[:, None], np.ones_like(t))
            coef[p][low] = [float(v) for v in sol]
    return coef


def user_table_path() -> str:
    """``$XDG_CACHE_HOME/jaxvision/conv_cost_table.json`` (``~/.cache/...`` by default)."""
    return user_cache.directory(TABLE_NAME)


@functools.cache
def load_table() -> dict:
    """The measured table with its fitted coefficients: the user's own (``user_table_path``) if
    it exists, else the one committed beside this module."""
    for path in (user_table_path(), os.path.join(os.path.dirname(__file__), TABLE_NAME)):
        if os.path.exists(path):
            with open(path) as f:
                table = json.load(f)
            table["path"] = path
            return table
    raise FileNotFoundError(f"{TABLE_NAME} is missing from {os.path.dirname(__file__)}")


def predict_ms(part: str, lowering: str, shape: ConvShape) -> float:
    """Predicted milliseconds of one pass (``PASSES``) of ``shape`` under ``lowering``."""
    coef = load_table()["coef"][part][lowering]
    return sum(a * x for a, x in zip(coef, features(shape), strict=True))


@contextlib.contextmanager
def forced_choice(lowering: str):
    """Within the block, trace every bf16 k x k convolution pass with ``lowering`` ('taps' or
    'xla'), whatever the model predicts ('auto' restores the model)."""
    if lowering not in CHOICES:
        raise ValueError(f"unknown lowering {lowering!r}: use one of {CHOICES}")
    _forced.append(lowering)
    try:
        yield
    finally:
        _forced.pop()


def choose(part: str, shape: ConvShape) -> str:
    """'taps' or 'xla' for one pass of a bf16 convolution of ``shape``: the forced choice or
    ``$JAXVISION_TAP_CONV`` if set, else the lowering with the lower predicted time."""
    setting = _forced[-1] if _forced else env_settings.choice(ENV_VAR)
    if setting != "auto":
        return setting
    taps, xla = (predict_ms(part, low, shape) for low in ("taps", "xla"))
    return "taps" if taps < xla else "xla"
