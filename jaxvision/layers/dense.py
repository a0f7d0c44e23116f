"""The matrix products of Dense layers: oneDNN's on the CPU, float32 accumulation for bf16.

``f32_accumulating_dot_general`` is passed as ``dot_general=`` to the Dense layers of the
transformer blocks (and the heads of the models built from them).

**oneDNN** (``jaxvision.layers.onednn_matmul``): when ``lowering.conv_impl() == 'onednn'`` (the
default on the CPU backend; ``set_conv_impl('xla')`` / ``using_conv_impl('xla')`` switch it off,
as ``jaxvision.export`` does) and ``onednn_matmul_applies`` (float32 or bfloat16, one device), a
Dense product (lhs's last axes contracted with rhs's first, no batch axes) is oneDNN's matmul,
forward and backward, in float32 as well as bf16. Measured speedups: ``onednn_matmul``'s
docstring.

**Elsewhere** (GPUs, several devices, oneDNN unavailable): XLA:CPU sends a bf16 x bf16 product
to the AMX bf16 units only when the result is requested in float32 (``preferred_element_type``);
a bf16 -> bf16 ``dot_general`` is upcast and run in float32. GPUs accumulate in float32 either
way. bf16/fp16 Dense products are therefore computed, forward and both backward products, as
bf16 x bf16 -> float32 (then cast to the input dtype). Measured in experiments/xla_cpu_conv:
ViT-S/16 training in bf16 goes from 0.89x to 1.64x the float32 speed on this CPU.
"""

from __future__ import annotations

import functools
import math

import jax
from jax import lax

from jaxvision.layers import onednn_matmul as _onednn
from jaxvision.layers.lowering import LOW_PRECISION, conv_impl, matmul, weight_grad

__all__ = ["f32_accumulating_dot_general"]

@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _low_precision_dot(lhs, rhs, k: int):
    """lhs (B..., K...) . rhs (K..., N...) -> (B..., N...) contracting the last/first ``k`` axes."""
    dims = (tuple(range(lhs.ndim - k, lhs.ndim)), tuple(range(k))), ((), ())
    return matmul(lhs, rhs, dims)


def _fwd(lhs, rhs, k):
    return _low_precision_dot(lhs, rhs, k), (lhs, rhs)


def _bwd(k, res, g):
    lhs, rhs = res
    g = g.astype(lhs.dtype)
    n = rhs.ndim - k  # output feature axes
    b = lhs.ndim - k  # batch axes of lhs
    g_feat = tuple(range(g.ndim - n, g.ndim))
    dlhs = matmul(g, rhs, ((g_feat, tuple(range(k, rhs.ndim))), ((), ())))
    if k == 1 and n == 1:
        # (..., K) x (..., N) -> (K, N) with the narrow operand transposed (see lowering).
        drhs = weight_grad(lhs, g, b)
    else:
        batch = tuple(range(b))
        drhs = matmul(lhs, g, ((batch, batch), ((), ())))
    return dlhs, drhs.astype(rhs.dtype)


_low_precision_dot.defvjp(_fwd, _bwd)


def f32_accumulating_dot_general(lhs, rhs, dimension_numbers, precision=None,
                                 preferred_element_type=None):
    """Drop-in ``lax.dot_general`` for ``nn.Dense(dot_general=...)`` / ``nn.DenseGeneral``.

    A Dense product, lhs (B..., K...) . rhs (K..., N...) -> (B..., N...) contracting lhs's last
    and rhs's first ``k`` axes with no batch axes: float32/bf16 operands of one dtype go to
    oneDNN's matmul where it applies (module docstring; ``precision`` is then moot: oneDNN
    multiplies float32 in float32, as XLA:CPU does at every precision); other bf16/fp16 ones
    accumulate in float32 forward and backward. Every other case is ``lax.dot_general``.
    Output dtype: the operands'.
    """
    (lc, rc), (lb, rb) = dimension_numbers
    k = len(lc)
    dense = (
        rhs.dtype == lhs.dtype
        and not lb
        and not rb
        and preferred_element_type in (None, lhs.dtype)
        and tuple(lc) == tuple(range(lhs.ndim - k, lhs.ndim))
        and tuple(rc) == tuple(range(k))
    )
    if dense and conv_impl() == "onednn":
        # DenseGeneral's multi-axis contractions and outputs are one (M, K) x (K, N) product.
        batch, features = lhs.shape[: lhs.ndim - k], rhs.shape[k:]
        a = lhs.reshape(*batch, math.prod(lhs.shape[lhs.ndim - k:]))
        b = rhs.reshape(a.shape[-1], math.prod(features))
        if _onednn.onednn_matmul_applies(a, b):
            return _onednn.onednn_matmul(a, b).reshape(*batch, *features)
    if dense and lhs.dtype in LOW_PRECISION and preferred_element_type is None:
        return _low_precision_dot(lhs, rhs, k)
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                           preferred_element_type=preferred_element_type)
