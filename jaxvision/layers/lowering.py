"""How convolutions reach the hardware: XLA's convolution op, or formulations XLA:CPU runs several
times faster.

On GPUs and TPUs XLA's convolution (cuDNN / the TPU conv units) is the fast path and is kept. On
CPUs (jaxlib 0.10, experiments/xla_cpu_conv) XLA:CPU runs a 1x1 convolution 2-5x slower than the
identical matmul over channels and its weight gradient 5-10x slower, and depthwise convolutions
10-30x slower than the same sum of shifted products (its depthwise weight gradient computes a
dense C x C kernel). The 'cpu' lowering therefore computes

**Depthwise convolutions** (``groups == in_channels``) as a sum over the kh * kw taps of a
strided slice of the padded input times that tap's per-channel weights, accumulated in float32
(XLA fuses the sum into one pass), with a VJP that keeps only the input: dx is the same sum over
the stride-dilated dy with the flipped kernel, dw one product-and-sum per tap. (Autodiff of the
sum would keep every shifted copy: 2.2x Keras' memory on EfficientNet-B0.)

**Patchify convolutions** (kernel == stride, no padding: ViT's patch embedding) as
space-to-depth followed by a pointwise convolution.

**Pointwise (1x1) convolutions** as a matmul with its own VJP:

* forward ``y = x[:, ::s, ::s] @ w`` over the channel axis;
* ``dx = dy @ w.T`` (scattered back to the strided positions for stride > 1);
* ``dw = x.T @ dy`` contracting over N, H, W, written so that XLA transposes the operand with
  fewer channels (``weight_grad``): XLA:CPU materializes the transposed operand of such a product,
  and when that operand is a fused chain (BatchNorm + ReLU + residual adds) the transposed
  recomputation costs up to 10x the product itself; picking the narrow side cut the ResNet-50 step
  from 4.8 s to 3.9 s at batch 16.

**Dense bf16 k x k convolutions** (``jaxvision.layers.tap_conv``): per pass (forward, input
gradient, weight gradient), XLA's convolution (which XLA:CPU upcasts to float32) or per-tap
bf16 x bf16 -> float32 matmuls, whichever a cost model fitted to a measured table predicts faster
for the shape (``jaxvision.layers.conv_cost``): per-tap matmuls on many-channel small maps, XLA's
convolution on large maps and the 7x7 stem. Float32 k x k convolutions stay XLA's.

bf16/fp16 products accumulate in float32 (the form XLA:CPU runs on the AMX bf16 units; GPUs
accumulate in float32 anyway).

**oneDNN** (``jaxvision.layers.onednn_conv``, impl 'onednn'): where it is built and applies
(float32/bf16, one device), every convolution is oneDNN's, the kernels PyTorch's CPU
convolutions use, called as XLA FFI custom calls; the forms above take the rest. Max and
average pooling follow the same choice (``jaxvision.layers.onednn_pool``), and so do the
transformer blocks' Dense products, which go to oneDNN's matmul (``jaxvision.layers.dense``,
``jaxvision.layers.onednn_matmul``): 'xla' and 'cpu' keep XLA's dot.

The choice is made at trace time: ``conv_impl()`` is 'onednn' on the CPU backend and 'xla'
elsewhere, unless set by ``set_conv_impl`` or the environment variable ``JAXVISION_CONV_IMPL``
(``xla`` | ``cpu`` | ``onednn`` | ``auto``). All give the same results up to float rounding
(tests/layers/test_lowering.py, tests/layers/test_onednn_conv.py).

Every 'cpu' and 'onednn' form has a custom VJP, so forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``,
``jax.linearize``) fails through it with JAX's "can't apply forward-mode autodiff (jvp) to a
custom_vjp function": choose 'xla' for that (before the function is traced: a jitted function
keeps the lowering it was traced with, even when jitted again). ``jax.hessian`` is forward over
reverse, so it needs 'xla' too. Reverse mode and reverse over reverse (a gradient of a gradient,
``jax.jacrev(jax.jacrev(f))``, Hessian-vector products as the gradient of a dot with a gradient)
work with every lowering.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from jaxvision import env_settings

__all__ = [
    "conv_impl", "set_conv_impl", "using_conv_impl", "resolve_conv_impl", "pointwise_conv", "depthwise_conv", "patchify_conv",
    "weight_grad", "matmul", "pad_beyond_kernel",
]

IMPLS = env_settings.CHOICES["JAXVISION_CONV_IMPL"][0]
LOW_PRECISION = (jnp.bfloat16, jnp.float16)  # dtypes whose products accumulate in float32
_override: list[str] = []


def set_conv_impl(impl: str | None) -> None:
    """Choose how convolutions are lowered from now on (traced functions keep what they traced
    with, also when jitted again: JAX caches traces per function): 'auto' ('cpu' on the CPU
    backend, 'xla' elsewhere), 'xla', 'cpu' (jaxvision's pure-JAX CPU forms), 'onednn' (oneDNN
    where ``jaxvision.layers.onednn_conv`` applies, else the 'cpu' forms); None restores the
    default (``JAXVISION_CONV_IMPL`` or 'auto'). Use 'xla' for forward-mode autodiff (see the
    module docstring)."""
    if impl is not None and impl not in IMPLS:
        raise ValueError(f"unknown conv impl {impl!r}: use one of {IMPLS}")
    _override[:] = [impl] if impl else []


@contextlib.contextmanager
def using_conv_impl(impl: str):
    """``with using_conv_impl('xla'): ...`` traces the convolutions (and the other oneDNN ops:
    Dense, attention, GELU, pooling) in its body with ``impl`` (see ``set_conv_impl``) and then
    restores whatever was chosen before. The choice is read when a function is *traced*: a
    ``jax.jit`` function already traced outside the block keeps that trace inside it (jit's
    cache does not know the choice), so jit a fresh function (e.g. a new lambda) in the block,
    as ``jaxvision.export`` does."""
    saved = list(_override)
    set_conv_impl(impl)
    try:
        yield
    finally:
        _override[:] = saved


def conv_impl() -> str:
    """'xla', 'cpu' or 'onednn': the lowering used for convolutions traced now (see the module
    docstring). 'auto' is 'onednn' on the CPU backend (which falls back to the 'cpu' forms where
    oneDNN is unavailable or does not apply) and 'xla' elsewhere."""
    impl = _override[0] if _override else env_settings.choice("JAXVISION_CONV_IMPL")
    return resolve_conv_impl(impl)


def resolve_conv_impl(impl: str | None) -> str:
    """The lowering an ``impl`` argument names: None -> ``conv_impl()``, 'auto' -> 'onednn' on
    the CPU backend and 'xla' elsewhere; raises ValueError for a name not in ``IMPLS``."""
    if impl is None:
        return conv_impl()
    if impl not in IMPLS:
        raise ValueError(f"unknown conv impl {impl!r}: use one of {IMPLS}")
    if impl == "auto":
        return "onednn" if jax.default_backend() == "cpu" else "xla"
    return impl


def matmul(a: jnp.ndarray, b: jnp.ndarray, dims) -> jnp.ndarray:
    """``lax.dot_general`` in ``a``'s dtype; bf16/fp16 operands accumulate in float32."""
    if a.dtype in LOW_PRECISION:
        return lax.dot_general(a, b.astype(a.dtype), dims,
                               preferred_element_type=jnp.float32).astype(a.dtype)
    return lax.dot_general(a, b, dims)


def weight_grad(x: jnp.ndarray, g: jnp.ndarray, batch_axes: int) -> jnp.ndarray:
    """``x (B..., K) , g (B..., N) -> (K, N)``: sum over the leading ``batch_axes`` axes of the
    outer products, i.e. the weight gradient of ``x @ w``.

    XLA makes the contracted axis minor by transposing one operand (the left one of the product);
    this puts the one with fewer channels on the left so the transposed copy is the smaller one.
    """
    axes = tuple(range(batch_axes))
    if x.shape[-1] <= g.shape[-1]:
        return matmul(x, g, ((axes, axes), ((), ())))
    return matmul(g, x, ((axes, axes), ((), ()))).T


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def pointwise_conv(x: jnp.ndarray, w: jnp.ndarray, strides: tuple[int, int]) -> jnp.ndarray:
    """1x1 convolution as a matmul: x (N, H, W, C) , w (C, F) -> (N, ceil(H/sh), ceil(W/sw), F)
    in x's dtype (the same as ``lax.conv_general_dilated`` with a (1, 1, C, F) kernel and zero
    padding)."""
    return _pointwise_fwd(x, w, strides)[0]


def _subsample(x: jnp.ndarray, strides: Sequence[int]) -> jnp.ndarray:
    sh, sw = strides
    return x[:, ::sh, ::sw] if (sh, sw) != (1, 1) else x


def _pointwise_fwd(x, w, strides):
    xs = _subsample(x, strides)
    return matmul(xs, w, (((3,), (0,)), ((), ()))), (xs, w, x.shape)


def _pointwise_bwd(strides, res, dy):
    xs, w, x_shape = res
    dy = dy.astype(xs.dtype)
    dxs = matmul(dy, w, (((3,), (1,)), ((), ())))
    dw = weight_grad(xs, dy, 3).astype(w.dtype)
    sh, sw = strides
    if (sh, sw) != (1, 1):
        # Back to the input grid: the skipped positions get zero gradient.
        _, h, wd, _ = x_shape
        ho, wo = dxs.shape[1:3]
        zero = jnp.zeros((), dxs.dtype)
        dxs = lax.pad(dxs, zero, [(0, 0, 0), (0, h - (ho - 1) * sh - 1, sh - 1),
                                  (0, wd - (wo - 1) * sw - 1, sw - 1), (0, 0, 0)])
    return dxs, dw


pointwise_conv.defvjp(_pointwise_fwd, _pointwise_bwd)


def explicit_padding(
    padding: str | Sequence[tuple[int, int]],
    spatial: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilation: Sequence[int],
) -> list[tuple[int, int]]:
    """(low, high) pixels per spatial axis for "SAME" / "VALID" / explicit pairs, as
    ``lax.conv_general_dilated`` pads (dilated kernels count their effective size)."""
    if isinstance(padding, str):
        window = [(k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True)]
        return [tuple(p) for p in lax.padtype_to_pads(spatial, window, strides, padding)]
    return [tuple(int(v) for v in p) for p in padding]


def pad_beyond_kernel(x: jnp.ndarray, pads: Sequence[tuple[int, int]],
                      kernel: Sequence[int], dilation: Sequence[int]):
    """(x, pads) with the part of each pad that reaches past the dilated kernel's extent - 1
    applied to x (N, H, W, C) with zeros: the same convolution, whose remaining pads every
    lowering handles. XLA:CPU (jaxlib 0.10) returns garbage input gradients (values up to 1e30)
    and oneDNN 3.2 wrong ones or a crash for pads that wide (tests/layers/test_onednn_conv.py).
    Negative pads (crops) are left as they are."""
    extents = [(k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True)]
    excess = [tuple(max(p - (e - 1), 0) for p in pair)
              for pair, e in zip(pads, extents, strict=True)]
    if not any(v for pair in excess for v in pair):
        return x, [tuple(p) for p in pads]
    x = jnp.pad(x, [(0, 0), *excess, (0, 0)])
    return x, [tuple(p - v for p, v in zip(pair, ex, strict=True))
               for pair, ex in zip(pads, excess, strict=True)]


def _shifted_products(xp, w, strides, dilation, out_hw):
    """sum_t xp[o * s + t * d] * w[t] over the kh * kw taps t: xp (N, Hp, Wp, C) already padded,
    w (kh, kw, C) -> (N, Ho, Wo, C) in w's dtype (float32 for low-precision inputs)."""
    kh, kw, c = w.shape
    (sh, sw), (dh, dw), (ho, wo) = strides, dilation, out_hw
    n = xp.shape[0]
    y = None
    for i in range(kh):
        for j in range(kw):
            tap = lax.slice(
                xp,
                (0, i * dh, j * dw, 0),
                (n, i * dh + (ho - 1) * sh + 1, j * dw + (wo - 1) * sw + 1, c),
                (1, sh, sw, 1),
            )
            term = tap.astype(w.dtype) * w[i, j]
            y = term if y is None else y + term
    return y


def pad_hw(x, pads, interior=(0, 0)):
    """Pad (or crop, for negative amounts) the two spatial axes of an NHWC array."""
    cfg = [(0, 0, 0), (*pads[0], interior[0]), (*pads[1], interior[1]), (0, 0, 0)]
    return lax.pad(x, jnp.zeros((), x.dtype), cfg)


def xla_conv(x, w, strides, dilation, pads):
    """XLA's dense NHWC/HWIO convolution with explicit (low, high) pads: the reference form the
    custom VJPs of ``tap_conv`` and ``narrow_conv`` fall back to."""
    return lax.conv_general_dilated(
        x, w, window_strides=strides, padding=pads, rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def tap_slice(xp, i, j, strides, dilation, out_hw):
    """The input pixels tap (i, j) reads: xp[:, o * s + (i, j) * d] for every output o, from the
    padded input xp (N, Hp, Wp, C) -> (N, Ho, Wo, C)."""
    (sh, sw), (dh, dw), (ho, wo) = strides, dilation, out_hw
    n, _, _, c = xp.shape
    return lax.slice(xp, (0, i * dh, j * dw, 0),
                     (n, i * dh + (ho - 1) * sh + 1, j * dw + (wo - 1) * sw + 1, c),
                     (1, sh, sw, 1))


def conv_out_hw(x_hw, kernel_hw, strides, dilation, pads):
    """Output (Ho, Wo) of a convolution over x_hw with explicit pads; 0 where the dilated kernel
    does not fit (as ``lax.conv_general_dilated`` gives)."""
    return tuple(
        max((n + lo + hi - (k - 1) * d - 1) // s + 1, 0)
        for n, k, s, d, (lo, hi) in zip(x_hw, kernel_hw, strides, dilation, pads, strict=True)
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _depthwise(x, w, strides, dilation, pads):
    """x (N, H, W, C), w (kh, kw, C) in the accumulation dtype -> (N, Ho, Wo, C) in that dtype."""
    return _depthwise_fwd(x, w, strides, dilation, pads)[0]


def _depthwise_fwd(x, w, strides, dilation, pads):
    out_hw = conv_out_hw(x.shape[1:3], w.shape[:2], strides, dilation, pads)
    # Only x and w are kept for the backward pass (autodiff would keep every shifted copy).
    return _shifted_products(pad_hw(x, pads), w, strides, dilation, out_hw), (x, w)


def _depthwise_bwd(strides, dilation, pads, res, dy):
    x, w = res
    kh, kw, _ = w.shape
    dy = dy.astype(w.dtype)
    xp = pad_hw(x, pads)
    hp, wp = xp.shape[1:3]
    ho, wo = dy.shape[1:3]
    # dx: the strided products spread dy back over the padded input; that is dy dilated by the
    # strides, correlated with the flipped kernel, then cropped to the unpadded input.
    reach = [(k - 1) * d for k, d in zip((kh, kw), dilation, strict=True)]
    dyd = pad_hw(dy, [(reach[0], hp - (ho - 1) * strides[0] - 1),
                    (reach[1], wp - (wo - 1) * strides[1] - 1)],
               interior=(strides[0] - 1, strides[1] - 1))
    dxp = _shifted_products(dyd, w[::-1, ::-1], (1, 1), dilation, (hp, wp))
    dx = pad_hw(dxp, [(-lo, -hi) for lo, hi in pads])
    # dw: per tap, the sum over N, Ho, Wo of the shifted input times dy. One tap per scan step:
    # XLA:CPU materializes each shifted copy for its reduction, and unrolled they would all be
    # live at once (k * k copies of the input: 7x the temporary memory of EfficientNet-B0).
    n, _, _, c = xp.shape
    span = ((ho - 1) * strides[0] + 1, (wo - 1) * strides[1] + 1)

    def tap_grad(_, t):
        i, j = t // kw, t % kw
        window = lax.dynamic_slice(xp, (0, i * dilation[0], j * dilation[1], 0), (n, *span, c))
        tap = window[:, :: strides[0], :: strides[1]]
        return None, jnp.sum(tap.astype(w.dtype) * dy, axis=(0, 1, 2))

    _, dw = lax.scan(tap_grad, None, jnp.arange(kh * kw))
    dw = dw.reshape(w.shape)
    return dx.astype(x.dtype), dw


_depthwise.defvjp(_depthwise_fwd, _depthwise_bwd)


def depthwise_conv(
    x: jnp.ndarray,
    kernel: jnp.ndarray,
    *,
    strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    dilation: Sequence[int] = (1, 1),
) -> jnp.ndarray:
    """Depthwise convolution as a sum of shifted products, with its own VJP.

    x (N, H, W, C), kernel (kh, kw, 1, C * m) -> (N, H', W', C * m) in x's dtype; output channel
    ``c * m + j`` is filter ``j`` of input channel ``c`` (``lax.conv_general_dilated`` with
    ``feature_group_count=C``). Accumulates in float32 for bf16/fp16 inputs. The backward pass
    keeps only x and the kernel: dx is the same sum of shifted products over the stride-dilated
    dy with the flipped kernel, dw a product-and-sum per tap.
    """
    kh, kw, _, features = kernel.shape
    c = x.shape[-1]
    if features != c:  # channel multiplier m > 1: filter j of channel c reads channel c
        x = jnp.repeat(x, features // c, axis=-1)
    strides, dilation = tuple(strides), tuple(dilation)
    pads = tuple(explicit_padding(padding, x.shape[1:3], (kh, kw), strides, dilation))
    acc = jnp.promote_types(x.dtype, jnp.float32)
    y = _depthwise(x, kernel[:, :, 0, :].astype(acc), strides, dilation, pads)
    return y.astype(x.dtype)


def patchify_conv(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    """Non-overlapping convolution (kernel == stride, no padding; ViT's patch embedding) as
    space-to-depth and one ``pointwise_conv``: x (N, H, W, C), kernel (p, q, C, F) ->
    (N, H // p, W // q, F); rows and columns beyond a whole patch are dropped, as VALID does."""
    p, q, c, f = kernel.shape
    n, h, w, _ = x.shape
    ho, wo = h // p, w // q
    x = x[:, : ho * p, : wo * q]
    patches = x.reshape(n, ho, p, wo, q, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, ho, wo, p * q * c)
    return pointwise_conv(patches, kernel.reshape(p * q * c, f), (1, 1))
