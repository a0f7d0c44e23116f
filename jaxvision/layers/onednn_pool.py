"""Max and average pooling on the CPU through oneDNN (PyTorch's CPU pooling), forward and backward.

XLA:CPU differentiates max pooling with a select-and-scatter that it lowers to reduce-windows,
iotas, broadcasts and concatenates: ResNet-50's stem pool (3x3, stride 2, (16, 112, 112, 64))
took ~0.35 s of a ~2.2 s bf16 training step (experiments/xla_cpu_conv/profile_step.py; the
seventh session in experiments/xla_cpu_conv/README.md; the eighth measures this module). This
module calls oneDNN's pooling primitives (``csrc/onednn_pool.cc``, built and loaded by
``jaxvision.layers.onednn_build`` like the convolutions) as XLA FFI custom calls, with a custom
VJP: max pooling's training forward also returns oneDNN's workspace (the index of each window's
maximum) and the backward routes each output gradient to it.

**Ties.** Each window's gradient goes to the first maximum in row-major window order, as XLA's
select-and-scatter (``nn.max_pool``'s gradient), ``tiled_max_pool`` and PyTorch send it; with
overlapping windows an input collects the gradients of every window it wins. All-equal windows
(ReLU's zeros) therefore give the same gradient on every lowering
(tests/layers/test_onednn_pool.py). Padded positions never win (max) and count as zeros
(``count_include_pad=True``) or not at all (False) in averages. NaN and -inf give XLA's values
(a window holding NaN pools to NaN, one of -inf to -inf: the handler redoes such inputs); the
gradient of a window holding NaN goes to its largest other value (XLA's to a NaN).

**When it is used** (``lowering.conv_impl() == 'onednn'``, the CPU default; ``set_conv_impl``
and ``using_conv_impl`` switch it like the convolutions): float32 and bfloat16 NHWC inputs with
a non-empty output, windows and strides >= 1, explicit non-negative padding with each pad smaller
than the window (wider pads would leave windows wholly in the padding, which oneDNN 3.2 runs with
its slow reference kernel and XLA gives -inf), in processes with one device (see
``onednn_conv``); ``JAXVISION_ONEDNN=0`` switches it off. Elsewhere ``jaxvision.layers.pooling``
keeps its other forms (``tiled_max_pool``, flax's reduce-window). No forward-mode autodiff through it (``set_conv_impl('xla')``);
reverse over reverse (``jax.jacrev(jax.jacrev(f))``, gradient penalties) works: the backward
passes have VJPs of their own (``jax.hessian`` is forward over reverse: 'xla').
Average pooling in bfloat16 accumulates in float32 inside oneDNN (XLA's reduce-window sums in
bfloat16), so it is the more accurate of the two.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.layers import onednn_build
from jaxvision.layers.lowering import conv_out_hw

__all__ = ["onednn_pool", "onednn_pool_applies"]

NAME = "onednn_pool"
TARGETS = {"forward": "JvPoolForward", "forward_training": "JvPoolForwardTraining",
           "max_backward": "JvPoolMaxBackward", "avg_backward": "JvPoolAvgBackward"}
DTYPES = onednn_build.DTYPES
# The ``algo`` attribute of csrc/onednn_pool.cc.
ALGOS = {"max": 0, "avg_include_pad": 1, "avg_exclude_pad": 2}


_load, available, why_unavailable = onednn_build.handler_functions(
    NAME, TARGETS, "pooling uses flax's (XLA's) reduce-window")


# Windows of at most this many positions: beyond it oneDNN 3.2 keeps int32 workspace indices,
# and its bf16 max-pooling backward then sent half the gradient nowhere (16x16 and 1x256 windows;
# float32 was right). Such windows (global pooling in all but name) take XLA's reduce_window.
MAX_WINDOW_POSITIONS = 255


def onednn_pool_applies(x: jnp.ndarray, window: Sequence[int], strides: Sequence[int],
                        pads: Sequence[tuple[int, int]]) -> bool:
    """Whether ``onednn_pool`` takes this pooling (see the module docstring): x (N, H, W, C)
    float32/bfloat16, explicit ``pads`` ((top, bottom), (left, right)) each in [0, window)."""
    if x.ndim != 4 or not onednn_build.takes_dtype(x) or len(pads) != 2:
        return False
    if min(x.shape[0], x.shape[3]) <= 0 or min(*window, *strides) < 1:
        return False
    if not all(0 <= p < k for k, pair in zip(window, pads, strict=True) for p in pair):
        return False
    if window[0] * window[1] > MAX_WINDOW_POSITIONS:
        return False
    if min(conv_out_hw(x.shape[1:3], window, strides, (1, 1), pads)) <= 0:
        return False
    return onednn_build.usable_here(_load)


def onednn_pool(x: jnp.ndarray, window: tuple[int, int], strides: tuple[int, int],
                pads: tuple[tuple[int, int], tuple[int, int]], kind: str = "max") -> jnp.ndarray:
    """Pooling of x (N, H, W, C), float32 or bfloat16, through oneDNN -> (N, H', W', C) in x's
    dtype, H' = (H + top + bottom - kh) // sh + 1 (likewise W'). ``kind``: 'max' (padded
    positions never win), 'avg_include_pad' (divides by kh * kw) or 'avg_exclude_pad' (by the
    number of real pixels in the window). Raises ValueError for an unknown kind and
    RuntimeError when the handlers are unavailable (``why_unavailable()``); the caller checks
    ``onednn_pool_applies`` first."""
    if kind not in ALGOS:
        raise ValueError(f"unknown pooling kind {kind!r}; one of {tuple(ALGOS)}")
    if not _load():
        raise RuntimeError(f"oneDNN pooling unavailable: {why_unavailable()}")
    geometry = (tuple(int(k) for k in window), tuple(int(s) for s in strides),
                tuple(tuple(int(p) for p in q) for q in pads), ALGOS[kind],
                tuple(int(d) for d in x.shape))
    return _pool(geometry, x)


def _attrs(window, strides, pads, algo, _x_shape) -> dict:
    (ph0, ph1), (pw0, pw1) = pads
    values = dict(kh=window[0], kw=window[1], sh=strides[0], sw=strides[1], ph0=ph0, ph1=ph1,
                  pw0=pw0, pw1=pw1, algo=algo)
    return {k: np.int64(v) for k, v in values.items()}


def _out_shape(geometry) -> tuple[int, ...]:
    window, strides, pads, _, (n, h, w, c) = geometry
    return (n, *conv_out_hw((h, w), window, strides, (1, 1), pads), c)


def _workspace(y_shape) -> jax.ShapeDtypeStruct:
    """oneDNN 3.2's max-pooling workspace, as opaque bytes: one uint8 index per output element
    for windows of at most ``MAX_WINDOW_POSITIONS`` positions, the only ones sent to oneDNN (the
    handler checks the byte count against the primitive's)."""
    return jax.ShapeDtypeStruct(y_shape, jnp.uint8)


def _call(name, out, *args, geometry):
    return jax.ffi.ffi_call(f"jaxvision_onednn_pool_{name}", out,
                            vmap_method="sequential")(*args, **_attrs(*geometry))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _pool(geometry, x):
    """y = pool(x) (inference: no workspace). ``geometry`` = (window, strides, pads, algo,
    x.shape), static."""
    out = jax.ShapeDtypeStruct(_out_shape(geometry), x.dtype)
    return _call("forward", out, x, geometry=geometry)


def _pool_fwd(geometry, x):
    # Residuals: the workspace and x (max: x only for a second derivative; the preceding
    # activation keeps it alive anyway), else an empty array carrying x's dtype.
    if geometry[3] == ALGOS["max"]:
        y, ws = _max_training(geometry, x)
        return y, (ws, x)
    return _pool(geometry, x), (None, jnp.zeros((0,), x.dtype))


def _pool_bwd(geometry, res, dy):
    ws, x = res
    dy = dy.astype(x.dtype)
    if ws is not None:
        return (_max_backward(geometry, dy, ws, x),)
    return (_avg_backward(geometry, dy),)


_pool.defvjp(_pool_fwd, _pool_bwd)


# The training forward (y and the workspace) as a custom VJP of its own: the outer derivative of
# reverse-over-reverse differentiates it.
@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _max_training(geometry, x):
    """Max pooling's (y, workspace) (see ``_workspace``)."""
    y_shape = _out_shape(geometry)
    return _call("forward_training", (jax.ShapeDtypeStruct(y_shape, x.dtype),
                                      _workspace(y_shape)), x, geometry=geometry)


def _max_training_fwd(geometry, x):
    y, ws = _max_training(geometry, x)
    return (y, ws), (ws, x)


def _max_training_bwd(geometry, res, cts):
    ws, x = res
    return (_max_backward(geometry, cts[0].astype(x.dtype), ws, x),)  # ws: integer, no cotangent


_max_training.defvjp(_max_training_fwd, _max_training_bwd)


# The backward passes are linear in dy; their own VJPs make reverse over reverse (jacrev of
# jacrev, Hessian-vector products) work, as for the other CPU lowerings.
@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _max_backward(geometry, dy, ws, x):
    """dx (x's shape): each dy at its window's first maximum (oneDNN's workspace ``ws``)."""
    del x  # only for the VJP
    return _call("max_backward", jax.ShapeDtypeStruct(geometry[4], dy.dtype), dy, ws,
                 geometry=geometry)


def _max_backward_fwd(geometry, dy, ws, x):
    return _max_backward(geometry, dy, ws, x), x


def _max_backward_bwd(geometry, x, c):
    # The transpose of routing dy to each window's first maximum: c read at that maximum.
    # Computed here in JAX from x (first strict maximum over the taps in row-major order, as
    # oneDNN picks it; padding never wins); the zero cotangents of ws and x are None.
    window, strides, pads, _, _ = geometry
    widths = [(0, 0), *pads, (0, 0)]
    xp = jnp.pad(x, widths, constant_values=-jnp.inf)
    cp = jnp.pad(c.astype(x.dtype), widths)
    n, oh, ow, ch = _out_shape(geometry)
    best = sel = None
    for i in range(window[0]):
        for j in range(window[1]):
            start, limit = (0, i, j, 0), (n, i + (oh - 1) * strides[0] + 1,
                                          j + (ow - 1) * strides[1] + 1, ch)
            xt = jax.lax.slice(xp, start, limit, (1, *strides, 1))
            ct = jax.lax.slice(cp, start, limit, (1, *strides, 1))
            if best is None:
                best, sel = xt, ct
            else:
                wins = xt > best
                best, sel = jnp.where(wins, xt, best), jnp.where(wins, ct, sel)
    return sel, None, None


_max_backward.defvjp(_max_backward_fwd, _max_backward_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _avg_backward(geometry, dy):
    """dx (x's shape) of average pooling: each dy spread over its window's divisor."""
    return _call("avg_backward", jax.ShapeDtypeStruct(geometry[4], dy.dtype), dy,
                 geometry=geometry)


def _avg_backward_fwd(geometry, dy):
    return _avg_backward(geometry, dy), None


def _avg_backward_bwd(geometry, _, c):
    # Average pooling is linear and its backward is its transpose, so the backward's
    # transpose is the forward itself.
    return (_pool(geometry, c),)


_avg_backward.defvjp(_avg_backward_fwd, _avg_backward_bwd)
