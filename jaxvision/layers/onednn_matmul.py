"""Matrix products on the CPU through oneDNN's matmul, the kernels behind PyTorch's CPU Linear.

XLA:CPU (jaxlib 0.10) runs a ``dot`` with its own (Eigen/YNNPACK) kernels; a ViT training step is
dominated by them. This module calls oneDNN's matmul primitive from inside XLA programs as an XLA
FFI custom call (``csrc/onednn_matmul.cc``: ``C = op(A) . op(B)``, a transposed operand read by
strides, not copied), with a custom VJP made of the same call, so gradients of any order stay on
oneDNN. ``jaxvision.layers.dense.f32_accumulating_dot_general`` (the ``dot_general=`` of the
transformer blocks' Dense layers) routes the Dense products here when
``lowering.conv_impl() == 'onednn'`` (the CPU default) and ``onednn_matmul_applies``.

Measured (2026-12-02, 2-core Intel Xeon with AMX, shared: load average 7-10) on ViT-S/16 training
steps, batch 16, 224 px, Dense products oneDNN's vs XLA's dot in the same process, steps
alternated (``PYTHONPATH=. python experiments/xla_cpu_conv/op_ab.py --op matmul --model vit_s16
--dtype float32|bfloat16 --rounds 6``), best step: float32 1.81 vs 1.61 img/s wall, 3.58 vs 3.17
img per CPU-second (a 4-round run: 1.59 vs 1.76 wall, 3.46 vs 3.23 per CPU-s); bfloat16 3.12 vs
2.79 img/s wall, 6.14 vs 5.64 per CPU-s (a 4-round run: 3.74 vs 3.13, 5.91 vs 5.20); a later
pair of 6-round runs: float32 1.59 vs 1.45 wall, 3.25 vs 2.91; bf16 2.93 vs 2.68, 5.95 vs 5.34. Per
product (``python experiments/xla_cpu_conv/matmul_parts.py --reps 15``; table in
``experiments/xla_cpu_conv/README.md``, eighth session): bf16 runs on AMX (oneDNN's
``brg:avx512_core_amx``) 1.4-9x faster than XLA:CPU's bf16 dot; float32 (``brg:avx512_core``)
ties with XLA's within the noise of that load (0.7-1.3x per product).

**How it is built**: as ``onednn_conv``'s handlers, by ``jaxvision.layers.onednn_build`` (compiled
once per machine on first use). ``available()`` / ``why_unavailable()`` say whether it loaded;
``JAXVISION_ONEDNN=0`` switches it off.

**When it is used**: float32 or bfloat16 operands of the same dtype, neither empty, in a process
with one device (XLA's SPMD partitioner would replicate a custom call over a mesh). bf16 products
accumulate in float32 inside oneDNN and are rounded once to bf16, as XLA's bf16 x bf16 -> f32
``dot_general`` followed by a cast; on CPUs where oneDNN multiplies float32 faster than bf16 (no
AMX) they are computed on float32 copies, the same products (``jaxvision.layers.onednn_bf16``). It has a custom VJP: no forward-mode autodiff through it
(``using_conv_impl('xla')`` traces XLA's dot instead; ``jaxvision.export`` does). Under
``jax.vmap`` the call runs once per mapped element.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.ad_checkpoint import checkpoint_name

from jaxvision.layers import onednn_bf16, onednn_build

__all__ = ["onednn_linear", "onednn_matmul", "onednn_matmul_applies", "available",
           "why_unavailable"]

NAME = "onednn_matmul"
TARGETS = {"matmul": "JvMatmul", "matmul_bias": "JvMatmulBias"}
DTYPES = onednn_build.DTYPES
# The checkpoint name of every product's output (``jax.ad_checkpoint.checkpoint_name``): remat
# policies that keep matmul outputs (``layers.remat``'s 'dots_saveable') name it, since JAX's
# dot policies do not recognise a custom call as a dot.
DENSE_PRODUCT = "jaxvision_dense_product"


_load, available, why_unavailable = onednn_build.handler_functions(
    NAME, TARGETS, "Dense layers use XLA's dot")


def onednn_matmul_applies(a: jnp.ndarray, b: jnp.ndarray) -> bool:
    """Whether ``onednn_matmul(a, b)`` takes a (..., K) x b (K, N): both float32 or both
    bfloat16, b 2-D with b.shape[0] == a.shape[-1], no dimension zero, the CPU backend (the
    handler is registered for the CPU only, also when ``set_conv_impl('onednn')`` is forced
    elsewhere), one device, and the handler loaded (see the module docstring)."""
    return (a.ndim >= 1 and b.ndim == 2 and onednn_build.takes_dtype(a, b)
            and a.shape[-1] == b.shape[0] and a.size > 0 and b.size > 0
            and onednn_build.usable_here(_load))


def onednn_matmul(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """a (..., K) x b (K, N) -> (..., N) through oneDNN, in a's dtype (float32 or bfloat16, b the
    same; bf16 products accumulate in float32). The leading axes of a are flattened into the rows
    of one product. Differentiable in both operands, to any order (reverse mode).

    Raises ValueError for shapes or dtypes it does not take (``onednn_matmul_applies`` tests
    them, along with the device count) and RuntimeError when the handler is unavailable
    (``why_unavailable()``)."""
    _check("onednn_matmul", a, b)
    lead = a.shape[:-1]
    c = _mm(False, False, a.reshape(math.prod(lead), a.shape[-1]), b)
    return checkpoint_name(c.reshape(*lead, b.shape[1]), DENSE_PRODUCT)


def _check(what: str, a, b):
    if b.ndim != 2 or a.ndim < 1 or a.shape[-1] != b.shape[0]:
        raise ValueError(f"{what} takes a (..., K) x b (K, N), got {a.shape} x {b.shape}")
    if not onednn_build.takes_dtype(a, b):
        raise ValueError(f"{what} takes two float32 or two bfloat16 operands, got "
                         f"{a.dtype} and {b.dtype}")
    if not _load():
        raise RuntimeError(f"oneDNN matmul unavailable: {why_unavailable()}")


def onednn_linear(a: jnp.ndarray, b: jnp.ndarray, bias: jnp.ndarray) -> jnp.ndarray:
    """a (..., K) x b (K, N) + bias (N,) -> (..., N) through oneDNN, the bias added to the float32
    accumulator inside the product (a Dense layer's forward pass in one pass); all three of one
    dtype, float32 or bfloat16. The backward pass is three ``onednn_matmul`` products (dA, dB and
    the bias gradient as ones (1, M) . dC, accumulated in float32), so gradients of any order
    stay on oneDNN. Raises as ``onednn_matmul``, and ValueError for a bias that is not (N,) in
    a's dtype."""
    _check("onednn_linear", a, b)
    if bias.shape != (b.shape[-1],) or bias.dtype != a.dtype:
        raise ValueError(f"onednn_linear takes a bias ({b.shape[-1]},) in {a.dtype}, got "
                         f"{bias.shape} {bias.dtype}")
    lead = a.shape[:-1]
    c = _linear(a.reshape(math.prod(lead), a.shape[-1]), b, bias)
    return checkpoint_name(c.reshape(*lead, b.shape[1]), DENSE_PRODUCT)


@jax.custom_vjp
def _linear(a, b, bias):
    wide = onednn_bf16.compute_dtype(a.dtype)
    c = jax.ffi.ffi_call(f"jaxvision_{NAME}_matmul_bias",
                         jax.ShapeDtypeStruct((a.shape[0], b.shape[1]), wide),
                         vmap_method="sequential")(a.astype(wide), b.astype(wide),
                                                   bias.astype(wide))
    return c.astype(a.dtype)


def _linear_fwd(a, b, bias):
    return _linear(a, b, bias), (a, b)


def _linear_bwd(res, dc):
    a, b = res
    dc = dc.astype(a.dtype)
    da, db = _mm_bwd(False, False, res, dc)
    dbias = _mm(False, False, jnp.ones((1, a.shape[0]), a.dtype), dc).reshape(-1)
    return da, db, dbias


_linear.defvjp(_linear_fwd, _linear_bwd)


def _call(ta: bool, tb: bool, a, b):
    """op(a) . op(b) -> (M, N) in a's dtype, computed in ``onednn_bf16.compute_dtype``."""
    wide = onednn_bf16.compute_dtype(a.dtype)
    return raw_matmul(ta, tb, a.astype(wide), b.astype(wide)).astype(a.dtype)


def raw_matmul(ta: bool, tb: bool, a, b):
    """op(a) . op(b) -> (M, N) in a's dtype, one handler call in that dtype (no derivatives);
    op transposes when the flag is set."""
    m = a.shape[1] if ta else a.shape[0]
    n = b.shape[0] if tb else b.shape[1]
    return jax.ffi.ffi_call(f"jaxvision_{NAME}_matmul", jax.ShapeDtypeStruct((m, n), a.dtype),
                            vmap_method="sequential")(a, b, ta=np.int64(ta), tb=np.int64(tb))


# C = op(A) . op(B) is bilinear, so each cotangent is again such a product of the cotangent dC
# with the other operand: the table below (dA, dB per (ta, tb)) keeps the backward pass, and the
# backward pass of the backward pass, on the same handler.
@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _mm(ta: bool, tb: bool, a, b):
    return _call(ta, tb, a, b)


def _mm_fwd(ta, tb, a, b):
    return _mm(ta, tb, a, b), (a, b)


def _mm_bwd(ta, tb, res, dc):
    a, b = res
    dc = dc.astype(a.dtype)
    if not ta and not tb:    # C = A B:      dA = dC B^T,    dB = A^T dC
        return _mm(False, True, dc, b), _mm(True, False, a, dc)
    if not ta and tb:        # C = A B^T:    dA = dC B,      dB = dC^T A
        return _mm(False, False, dc, b), _mm(True, False, dc, a)
    if ta and not tb:        # C = A^T B:    dA = B dC^T,    dB = A dC
        return _mm(False, True, b, dc), _mm(False, False, a, dc)
    return _mm(True, True, b, dc), _mm(True, True, dc, a)  # C = A^T B^T: dA = B^T dC^T, dB = dC^T A^T


_mm.defvjp(_mm_fwd, _mm_bwd)
