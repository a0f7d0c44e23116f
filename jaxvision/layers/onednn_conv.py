"""Convolutions on the CPU through oneDNN, the library behind PyTorch's CPU convolutions.

XLA:CPU (jaxlib 0.10) has no oneDNN convolution: it runs convolutions with its own kernels,
which vectorize poorly over few channels, have no blocked layouts and upcast bf16 to float32
(study: ``experiments/xla_cpu_conv/README.md``). This module calls oneDNN's convolution
primitives (forward, input gradient, weight gradient) from inside XLA programs as XLA FFI custom
calls, with a custom VJP. Measured on the 2-core AMD EPYC (avx512_bf16) against XLA's
convolution, forward + backward of one layer at batch 16: ResNet-50's 3x3 64->64 at 56 px
56 vs 137 ms in float32 and 30 vs 143 ms in bf16; a depthwise 3x3 at 56 px 18 vs 1,062 ms.

**How it is built.** The handlers are C++ (``csrc/onednn_conv.cc``, shipped with the package),
compiled once per machine on first use by ``jaxvision.layers.onednn_build`` (the system C++
compiler against JAX's FFI headers and the oneDNN wheels installed with jaxvision on x86-64
Linux). When no compiler or oneDNN is found, ``available()`` is False, ``why_unavailable()``
says why, and convolutions keep jaxvision's other CPU lowerings (``jaxvision.layers.lowering``):
the same results up to float rounding, slower.

**When it is used** (``lowering.conv_impl() == 'onednn'``, the default on the CPU backend when
available): float32 and bfloat16 2-D convolutions, NHWC x HWIO, any strides, dilation,
non-negative explicit padding and feature groups, whose input and kernel share the dtype and
whose output is not empty, with each pad smaller than the (dilated) kernel's extent; the rest go
to the other lowerings. Only in processes with one
device: XLA's SPMD partitioner would replicate a custom call over a mesh (gathering the batch),
so with several devices (``--xla_force_host_platform_device_count``, multi-host) the pure-JAX
lowerings, which partition, are kept. Set ``JAXVISION_ONEDNN=0`` to switch it off.

oneDNN runs its own OpenMP threads (``OMP_NUM_THREADS``, all cores when unset), one call at a
time. Products of bf16 accumulate in float32 inside oneDNN, as XLA's do; on CPUs where oneDNN
multiplies float32 faster than bf16 (no AMX) they are computed on float32 copies, the same
products (``jaxvision.layers.onednn_bf16``). Under ``jax.vmap`` the
custom calls run once per mapped element. Like every CPU lowering here it has a custom VJP:
no forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``) through it; use ``set_conv_impl('xla')``
for that. Exported programs (``jaxvision.export``) always use XLA's convolution.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.layers import onednn_bf16, onednn_build
from jaxvision.layers.lowering import conv_out_hw, pad_beyond_kernel

__all__ = ["onednn_conv", "onednn_conv_applies", "onednn_available", "onednn_why_unavailable"]

NAME = "onednn_conv"
TARGETS = {"forward": "JvConvForward", "input_grad": "JvConvInputGrad",
           "weight_grad": "JvConvWeightGrad"}
DTYPES = onednn_build.DTYPES


_load, available, why_unavailable = onednn_build.handler_functions(
    NAME, TARGETS, "convolutions use jaxvision's slower pure-JAX CPU lowerings")


# Under these names in ``jaxvision.layers`` (where ``onednn_conv`` is the function, not this
# module): ``from jaxvision.layers import onednn_available``.
onednn_available = available
onednn_why_unavailable = why_unavailable


def onednn_conv_applies(x: jnp.ndarray, kernel: jnp.ndarray, pads: Sequence[tuple[int, int]],
                        groups: int, dilation: Sequence[int] = (1, 1)) -> bool:
    """Whether ``onednn_conv`` takes this convolution (see the module docstring)."""
    return (x.ndim == 4 and kernel.ndim == 4 and onednn_build.takes_dtype(x, kernel)
            and x.shape[-1] > 0
            and kernel.shape[2] * groups == x.shape[-1] and kernel.shape[3] % groups == 0
            and _padding_supported(kernel.shape[:2], pads, dilation) and x.shape[0] > 0
            and onednn_build.usable_here(_load))


def _padding_supported(kernel_hw, pads, dilation) -> bool:
    """0 <= each pad < the dilated kernel's extent: oneDNN 3.2's im2col convolution (chosen for
    few channels) reads out of bounds beyond that. ``conv2d`` applies wider pads to x first
    (``lowering.pad_beyond_kernel``); negative ones (crops) go to the other lowerings."""
    return all(0 <= p < d * (k - 1) + 1
               for k, d, pair in zip(kernel_hw, dilation, pads, strict=True) for p in pair)


def onednn_conv(x: jnp.ndarray, kernel: jnp.ndarray, strides: tuple[int, int],
                pads: tuple[tuple[int, int], tuple[int, int]], dilation: tuple[int, int] = (1, 1),
                groups: int = 1) -> jnp.ndarray:
    """x (N, H, W, C) * kernel (kh, kw, C / groups, F) -> (N, H', W', F) through oneDNN, in x's
    dtype (float32 or bfloat16; products accumulate in float32). ``pads`` explicit
    ((top, bottom), (left, right)), non-negative; ``dilation`` XLA's (1 = none). Raises
    RuntimeError when the handlers are unavailable (``why_unavailable()``)."""
    if not _load():
        raise RuntimeError(f"oneDNN convolutions unavailable: {why_unavailable()}")
    x, pads = pad_beyond_kernel(x, pads, kernel.shape[:2], dilation)
    geometry = (tuple(int(s) for s in strides), tuple(tuple(int(p) for p in q) for q in pads),
                tuple(int(d) for d in dilation), int(groups))
    return _forward(geometry, x, kernel)


def _attrs(strides, pads, dilation, groups) -> dict:
    (ph0, ph1), (pw0, pw1) = pads
    values = dict(sh=strides[0], sw=strides[1], ph0=ph0, ph1=ph1, pw0=pw0, pw1=pw1,
                  dh=dilation[0], dw=dilation[1], groups=groups)
    return {k: np.int64(v) for k, v in values.items()}


def _call(name: str, out: jax.ShapeDtypeStruct, a, b, attrs):
    """One pass in ``out``'s dtype, computed in ``onednn_bf16.compute_dtype`` of it."""
    wide = onednn_bf16.compute_dtype(out.dtype)
    y = jax.ffi.ffi_call(f"jaxvision_onednn_conv_{name}", jax.ShapeDtypeStruct(out.shape, wide),
                         vmap_method="sequential")(a.astype(wide), b.astype(wide), **attrs)
    return y.astype(out.dtype)


# The three passes are each other's derivatives (the convolution is bilinear in x and kernel),
# so each has a custom VJP made of the other two: reverse-over-reverse (Hessian-vector products)
# stays on oneDNN. ``geometry`` = (strides, pads, dilation, groups).
@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _forward(geometry, x, kernel):
    """y = conv(x, kernel)."""
    strides, pads, dilation, _ = geometry
    oh, ow = conv_out_hw(x.shape[1:3], kernel.shape[:2], strides, dilation, pads)
    out = jax.ShapeDtypeStruct((x.shape[0], oh, ow, kernel.shape[3]), x.dtype)
    return _call("forward", out, x, kernel, _attrs(*geometry))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _input_grad(geometry, x_shape, dy, kernel):
    """dx = d<dy, conv(x, kernel)>/dx, shape ``x_shape``."""
    return _call("input_grad", jax.ShapeDtypeStruct(x_shape, dy.dtype), dy, kernel,
                 _attrs(*geometry))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _weight_grad(geometry, kernel_shape, x, dy):
    """dk = d<dy, conv(x, kernel)>/dkernel, shape ``kernel_shape``, in x's dtype. For bf16
    grouped (depthwise) convolutions with more than 9 taps it is computed from float32 copies
    of x and dy: there oneDNN 3.2's bf16 weight gradient without AMX
    (``jit_bf16:avx512_core_bf16``) took 40-49 ms against 15 ms in float32 (EfficientNet-B0's
    5x5 depthwise at 28 px, batch 16; ONEDNN_VERBOSE=1). For 3x3 depthwise (MobileNetV2) and
    dense convolutions the copies made the layers slower
    (experiments/xla_cpu_conv/onednn_layers.py)."""
    grouped = kernel_shape[2] != x.shape[3]
    wide_taps = kernel_shape[0] * kernel_shape[1] > 9
    wide = jnp.float32 if x.dtype == jnp.bfloat16 and grouped and wide_taps else x.dtype
    dk = _call("weight_grad", jax.ShapeDtypeStruct(kernel_shape, wide), x.astype(wide),
               dy.astype(wide), _attrs(*geometry))
    return dk.astype(x.dtype)


def _forward_fwd(geometry, x, kernel):
    return _forward(geometry, x, kernel), (x, kernel)


def _forward_bwd(geometry, res, dy):
    x, kernel = res
    dy = dy.astype(x.dtype)
    return (_input_grad(geometry, x.shape, dy, kernel),
            _weight_grad(geometry, kernel.shape, x, dy))


def _input_grad_fwd(geometry, x_shape, dy, kernel):
    return _input_grad(geometry, x_shape, dy, kernel), (dy, kernel)


def _input_grad_bwd(geometry, x_shape, res, c):
    dy, kernel = res
    c = c.astype(dy.dtype)
    return _forward(geometry, c, kernel), _weight_grad(geometry, kernel.shape, c, dy)


def _weight_grad_fwd(geometry, kernel_shape, x, dy):
    return _weight_grad(geometry, kernel_shape, x, dy), (x, dy)


def _weight_grad_bwd(geometry, kernel_shape, res, c):
    x, dy = res
    c = c.astype(x.dtype)
    return _input_grad(geometry, x.shape, dy, c), _forward(geometry, x, c)


_forward.defvjp(_forward_fwd, _forward_bwd)
_input_grad.defvjp(_input_grad_fwd, _input_grad_bwd)
_weight_grad.defvjp(_weight_grad_fwd, _weight_grad_bwd)
