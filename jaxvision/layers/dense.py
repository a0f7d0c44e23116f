"""Matrix products with float32 accumulation for low-precision Dense layers.

XLA:CPU sends a bf16 x bf16 product to the AMX bf16 units only when the result is requested in
float32 (``preferred_element_type``); a bf16 -> bf16 ``dot_general`` is upcast and run in float32.
GPUs accumulate in float32 either way. ``f32_accumulating_dot_general`` therefore computes the
forward product and both backward products as bf16 x bf16 -> float32 (then casts to the input
dtype), and is passed as ``dot_general=`` to the Dense layers of the transformer blocks.
Measured in experiments/xla_cpu_conv: ViT-S/16 training in bf16 goes from 0.89x to 1.64x the
float32 speed on this CPU.
"""

from __future__ import annotations

import functools

import jax
from jax import lax

from jaxvision.layers.lowering import LOW_PRECISION, matmul, weight_grad

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

    bf16/fp16 operands contracted over lhs's last and rhs's first axes (what Dense layers do)
    accumulate in float32 forward and backward; every other case is ``lax.dot_general``.
    """
    (lc, rc), (lb, rb) = dimension_numbers
    k = len(lc)
    if (
        lhs.dtype in LOW_PRECISION
        and rhs.dtype == lhs.dtype
        and not lb
        and not rb
        and preferred_element_type is None
        and tuple(lc) == tuple(range(lhs.ndim - k, lhs.ndim))
        and tuple(rc) == tuple(range(k))
    ):
        return _low_precision_dot(lhs, rhs, k)
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                           preferred_element_type=preferred_element_type)
