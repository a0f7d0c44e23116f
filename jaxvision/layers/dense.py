"""The matrix products of Dense layers: oneDNN's on the CPU, float32 accumulation for bf16.

``Dense`` (flax's Dense/DenseGeneral parameters and function, the bias inside oneDNN's product on
the CPU) is the transformer blocks' MLP and attention projection layer;
``f32_accumulating_dot_general`` is passed as ``dot_general=`` to the other Dense layers (heads,
hybrid models' layers).

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
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.core import meta
from jax import lax

from jaxvision.layers import onednn_matmul as _onednn
from jaxvision.layers.lowering import LOW_PRECISION, conv_impl, matmul, weight_grad

__all__ = ["Dense", "f32_accumulating_dot_general"]

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


class Dense(nn.Module):
    """A Dense layer whose product and bias are one oneDNN call on the CPU: ``nn.Dense`` and
    ``nn.DenseGeneral`` (contracting the last ``in_axes`` axes, ``features`` an int or a tuple)
    with the same parameters (``kernel`` (K..., N...), ``bias`` (N...), their initializers called
    with the flattened shapes (K, N) and (N,), as flax does, so the same RNG gives the same
    values) and the same function.

    On the CPU (``lowering.conv_impl() == 'onednn'``, ``onednn_matmul_applies``) the forward pass
    is ``onednn_matmul.onednn_linear``: the bias is added inside the product instead of in a
    separate pass, and its gradient is a oneDNN product accumulated in float32 (XLA:CPU sums a
    bf16 bias gradient over (N, T) as a slow tree of reduce-windows: ~10% of a bf16 ViT-S/16
    step). Elsewhere: ``f32_accumulating_dot_general`` then the bias, as
    ``nn.Dense(dot_general=f32_accumulating_dot_general)``.

    Input (B..., K...) -> (B..., N...) in ``dtype`` (None: the promoted dtype of the input and
    parameters, as flax). Raises ValueError when ``in_axes`` is not in [1, input rank].
    """

    features: int | tuple[int, ...]
    in_axes: int = 1
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = nn.initializers.zeros

    @nn.compact
    def __call__(self, x):
        x = jnp.asarray(x)
        features = (tuple(int(f) for f in self.features) if np.ndim(self.features)
                    else (int(self.features),))
        if not 1 <= self.in_axes <= x.ndim:
            raise ValueError(f"Dense(in_axes={self.in_axes}) contracts the last in_axes axes of "
                             f"its input, which has {x.ndim}: use 1 <= in_axes <= {x.ndim}")
        contracted = x.shape[x.ndim - self.in_axes:]
        k, n = math.prod(contracted), math.prod(features)

        def flat_init(init, flat_shape):
            def wrapped(rng, shape, dtype):
                value = init(rng, flat_shape, dtype)
                if isinstance(value, meta.AxisMetadata):  # nn.with_partitioning's boxes
                    return meta.replace_boxed(value, jnp.reshape(value.unbox(), shape))
                return jnp.reshape(value, shape)
            return wrapped

        kernel = self.param("kernel", flat_init(self.kernel_init, (k, n)), contracted + features,
                            self.param_dtype)
        bias = (self.param("bias", flat_init(self.bias_init, (n,)), features, self.param_dtype)
                if self.use_bias else None)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        lead = x.shape[: x.ndim - self.in_axes]
        x2, w2 = x.reshape(*lead, k), kernel.reshape(k, n)
        if bias is not None and conv_impl() == "onednn" and _onednn.onednn_matmul_applies(x2, w2):
            y = _onednn.onednn_linear(x2, w2, bias.reshape(n))
        else:
            y = f32_accumulating_dot_general(x2, w2, (((x2.ndim - 1,), (0,)), ((), ())))
            if bias is not None:
                y = y + bias.reshape(n)
        return y.reshape(*lead, *features)
