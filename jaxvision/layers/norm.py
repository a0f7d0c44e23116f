"""Normalization layers with one calling convention, ``norm(x, train=False)``, so that blocks can
take any of them as a factory (``functools.partial(BatchNorm, momentum=0.99)``, ``GroupNorm``...).

Statistics are reduced in float32 whatever the compute dtype; outputs are in ``dtype``; the
``scale`` and ``bias`` parameters are in ``param_dtype``.
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import dtypes as flax_dtypes
from jax import lax

__all__ = ["BatchNorm", "GroupNorm", "LayerNorm", "batch_norm_of", "batch_norm_train"]


# Activation / output / parameter dtypes of the training path below (Flax reduces their
# statistics in float32, as it does here). float16 and float64 keep Flax's code: float64 reduces
# in float64, and float16 was neither measured nor needed on the CPU.
_FAST_DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32))


def _pmean(values, axis_name, axis_index_groups):
    """Flax's ``maybe_distributed_mean`` communication: one ``pmean`` of the stacked (k, C)
    values (one collective instead of k) when ``axis_name`` is set; identity otherwise."""
    if axis_name is None:
        return values
    stacked = lax.pmean(jnp.stack(values), axis_name, axis_index_groups=axis_index_groups)
    return tuple(stacked[i] for i in range(len(values)))


BN_STATS = "bn_stats"  # csrc/bn_stats.cc: the per-channel sums as XLA FFI custom calls
BN_STATS_TARGETS = {"moments": "JvBnMoments", "grad_sums": "JvBnGradSums"}


def native_sums_used(x_dtype, dy_dtype=None) -> bool:
    """Whether the per-channel sums of a BatchNorm traced now run as the ``csrc/bn_stats.cc``
    custom calls: on the CPU backend when convolutions use oneDNN there (``lowering.conv_impl()
    == 'onednn'``, the same build and switch ``JAXVISION_ONEDNN``), in single-device processes
    (XLA's SPMD partitioner would replicate a custom call, gathering the batch), for bf16/f32
    activations (and a cotangent of the same dtype). Elsewhere they are XLA reductions."""
    from jaxvision.layers import lowering, onednn_build

    dtype = jnp.dtype(x_dtype)
    return (dtype in _FAST_DTYPES and (dy_dtype is None or jnp.dtype(dy_dtype) == dtype)
            and lowering.conv_impl() == "onednn" and onednn_build.single_device()
            and onednn_build.load(BN_STATS, BN_STATS_TARGETS,
                                  "BatchNorm sums use XLA's reductions"))


def _like(x, outs) -> tuple:
    """A custom call's outputs typed as varying over the shard_map axes ``x`` varies over
    (``ffi_call`` types them invariant; they are this device's sums)."""
    axes = tuple(sorted(_varying(x)))
    return tuple(lax.pcast(o, axes, to="varying") if axes else o for o in outs)


def _moment_sums(x):
    """(sum x, sum x^2) over all axes but the last, float32 (C,) each, from x (..., C)."""
    if native_sums_used(x.dtype):
        return _native_moments(x)
    xf = x.astype(jnp.float32)
    axes = tuple(range(x.ndim - 1))
    # Two plain sums: XLA:CPU runs each as a fast YNNPACK reduction (on a float32 copy of a bf16
    # x); one variadic lax.reduce would read x once but is ~3x slower (XLA's own loop).
    return xf.sum(axes), jnp.square(xf).sum(axes)


def _grad_sums(x, dy, mean, rstd):
    """(sum dy, sum dy * x_hat) over all axes but the last, float32 (C,) each, with x_hat =
    (x - mean) * rstd in float32; x, dy (..., C), mean and rstd (C,) float32."""
    if native_sums_used(x.dtype, dy.dtype):
        return _native_grad_sums(x, dy, mean, rstd)
    axes = tuple(range(x.ndim - 1))
    g = dy.astype(jnp.float32)
    xhat = (x.astype(jnp.float32) - mean) * rstd
    return g.sum(axes), (g * xhat).sum(axes)


# The custom calls with their derivatives written out, so that gradients of gradients (a
# gradient penalty, jax.hessian by reverse over reverse) pass through BatchNorm: an ffi_call has
# no derivative of its own. Those second-order terms are plain XLA reductions.
@jax.custom_vjp
def _native_moments(x):
    out = jax.ShapeDtypeStruct((x.shape[-1],), jnp.float32)
    return _like(x, jax.ffi.ffi_call("jaxvision_bn_stats_moments", (out, out),
                                     vmap_method="sequential")(x))


def _native_moments_fwd(x):
    return _native_moments(x), x


def _native_moments_bwd(x, cts):
    c1, c2 = cts  # d(sum x)/dx = 1, d(sum x^2)/dx = 2x
    return ((c1 + 2.0 * c2 * x.astype(jnp.float32)).astype(x.dtype),)


_native_moments.defvjp(_native_moments_fwd, _native_moments_bwd)


@jax.custom_vjp
def _native_grad_sums(x, dy, mean, rstd):
    out = jax.ShapeDtypeStruct((x.shape[-1],), jnp.float32)
    return _like(x, jax.ffi.ffi_call("jaxvision_bn_stats_grad_sums", (out, out),
                                     vmap_method="sequential")(x, dy, mean, rstd))


def _native_grad_sums_fwd(x, dy, mean, rstd):
    return _native_grad_sums(x, dy, mean, rstd), (x, dy, mean, rstd)


def _native_grad_sums_bwd(res, cts):
    # (sum g, sum g * (x - mean) * rstd) with g = dy: linear in g, bilinear in g and x.
    x, dy, mean, rstd = res
    a, b = cts
    axes = tuple(range(x.ndim - 1))
    g, centered = dy.astype(jnp.float32), x.astype(jnp.float32) - mean
    d_dy = a + b * centered * rstd
    d_x = b * rstd * g
    d_mean = -(b * rstd) * g.sum(axes)
    d_rstd = b * (g * centered).sum(axes)
    return d_x.astype(x.dtype), d_dy.astype(dy.dtype), d_mean, d_rstd


_native_grad_sums.defvjp(_native_grad_sums_fwd, _native_grad_sums_bwd)


def _varying(a) -> frozenset:
    """The manual mesh axes ``a`` varies over (shard_map with check_vma; empty under pmap)."""
    t = jax.typeof(a)
    mat = getattr(t, "manual_axis_type", None)
    return frozenset(mat.varying) if mat is not None else frozenset(getattr(t, "vma", ()))


def _spread(cts, axis_name, axis_index_groups, tracked):
    """Cotangents of statistics averaged over ``axis_name``, as each device's share, the way
    autodiff transposes Flax's ``pmean``: per-device cotangents (pmap; varying under shard_map)
    are averaged; one cotangent of the single invariant statistic of ``shard_map`` is split
    evenly over the devices that averaged it. ``tracked``: whether x's type carries the axis
    (shard_map's check_vma), i.e. whether an invariant cotangent is that single one."""
    if axis_name is None:
        return cts
    out = []
    for ct in cts:
        if axis_name in _varying(ct) or not tracked:
            (ct,) = _pmean((ct,), axis_name, axis_index_groups)
        else:
            size = len(axis_index_groups[0]) if axis_index_groups else lax.axis_size(axis_name)
            ct = ct / size
        out.append(ct)
    return tuple(out)


def _groups(axis_index_groups):
    """``axis_index_groups`` as nested tuples (a static argument of the custom VJP)."""
    return None if axis_index_groups is None else tuple(tuple(g) for g in axis_index_groups)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6, 7))
def batch_norm_train(x, scale, bias, epsilon, out_dtype, axis_name=None, axis_index_groups=None,
                     use_fast_variance=True):
    """Training-mode batch normalization over all axes of ``x`` but the last, with a hand-written
    VJP that never keeps a float32 copy of a bf16 activation.

    Same numbers as ``flax.linen.BatchNorm(use_running_average=False)`` (its ``_compute_stats``
    then ``_normalize``): statistics reduced in float32 (``mean``, and ``var = max(0, E[x^2] -
    mean^2)`` with ``use_fast_variance`` else ``E[(x - mean)^2]``, biased), averaged over
    ``axis_name`` / ``axis_index_groups`` with one ``pmean`` as Flax does, then
    ``y = (x - mean) * (rsqrt(var + epsilon) * scale) + bias`` in float32, cast to ``out_dtype``
    (one XLA fusion: bf16 in, bf16 out). The per-channel sums are the ``csrc/bn_stats.cc``
    custom calls where ``native_sums_used`` (they read bf16 directly); elsewhere XLA reductions,
    for which XLA:CPU still writes a float32 copy (YNNPACK takes only materialized inputs).
    Flax's autodiff writes float32 copies of x, x - mean, dy and dy * x_hat for every layer.

    The VJP is the closed form of the batch-norm gradient, with x_hat = (x - mean) * rstd
    recomputed from the bf16 input and the two per-channel reductions in one pass:
    ``dx = scale * rstd * (g - mean(g) - x_hat * mean(g * x_hat))`` (means over the batch, all
    devices of ``axis_name``), ``dscale = sum(g * x_hat)``, ``dbias = sum(g)`` (this device's
    sums, as Flax's autodiff gives), plus the terms for cotangents of the returned ``mean`` /
    ``var`` (zero in training, where they only feed ``batch_stats``). Reverse mode only: no
    ``jax.jvp`` / ``jax.jacfwd`` through it (a custom VJP), unlike Flax's formulation; gradients
    of gradients (reverse over reverse) work. Where the one-pass variance cancels completely
    (a channel whose mean is ~1e4 times its spread: E[x^2] - mean^2 rounds to <= 0 and is
    clamped), the forward is as wrong as Flax's and this closed form is not the derivative of
    that clamp (Flax's autodiff is, and is as wrong in another way); ``use_fast_variance=False``
    is right there.

    Args:
      x: (..., C) bfloat16 or float32 activations (reduced over every axis but the last).
      scale, bias: (C,) float32 or bfloat16 parameters (pass ones / zeros for an absent one).
      epsilon: Python float added to the variance.
      out_dtype: dtype of ``y`` (Flax's ``canonicalize_dtype`` of x and the parameters).
      axis_name, axis_index_groups: as ``flax.linen.BatchNorm``'s (synchronized statistics
        under ``pmap`` / ``shard_map``); None keeps the statistics of this device.
      use_fast_variance: as Flax's (one pass E[x^2] - mean^2, else two passes).

    Returns:
      ``(y, mean, var)``: y (..., C) in ``out_dtype``; the batch mean and biased variance (C,)
      in float32, for the running averages.
    """
    out, _ = _bn_fwd(x, scale, bias, epsilon, out_dtype, axis_name, axis_index_groups,
                     use_fast_variance)
    return out


def _bn_fwd(x, scale, bias, epsilon, out_dtype, axis_name, axis_index_groups, use_fast_variance):
    axes = tuple(range(x.ndim - 1))
    n = math.prod(x.shape[:-1])  # elements per channel on this device
    xf = x.astype(jnp.float32)  # fused into the elementwise consumers below
    if use_fast_variance:
        sum1, sum2 = _moment_sums(x)
        mean, mean2 = _pmean((sum1 / n, sum2 / n), axis_name, axis_index_groups)
        raw = mean2 - jnp.square(mean)
        var = jnp.maximum(0.0, raw)  # round-off can make it negative
    else:
        (mean,) = _pmean((xf.sum(axes) / n,), axis_name, axis_index_groups)
        (var,) = _pmean((jnp.square(xf - mean).mean(axes),), axis_name, axis_index_groups)
        raw = var
    rstd = lax.rsqrt(var + epsilon)
    mul = rstd * scale
    y = ((xf - mean) * mul + bias).astype(out_dtype)
    return (y, mean, var), (x, mean, raw, rstd, scale, bias)


def _bn_bwd(epsilon, out_dtype, axis_name, axis_index_groups, use_fast_variance, res, cts):
    del epsilon, out_dtype
    x, mean, raw, rstd, scale, bias = res
    dy, dmean, dvar = cts
    n = math.prod(x.shape[:-1])  # elements per channel on this device
    xf = x.astype(jnp.float32)
    xhat = (xf - mean) * rstd
    g = dy.astype(jnp.float32)
    # This device's sums (the parameters' gradients), read from the bf16 x and dy.
    sum_g, sum_gx = _grad_sums(x, dy, mean, rstd)
    mean_g, mean_gx = _pmean((sum_g / n, sum_gx / n), axis_name, axis_index_groups)
    # Through Flax's fast variance max(0, raw = mean2 - mean^2): d var / d raw is 1, 0 where raw
    # < 0, 1/2 where raw == 0 (lax.max's JVP splits a tie). Either variance has
    # d var / d x_i = 2 (x_i - mean) / n_total and d mean / d x_i = 1 / n_total.
    if use_fast_variance:
        dvar = dvar * jnp.where(raw > 0, 1.0, jnp.where(raw == 0, 0.5, 0.0))
    dmean, dvar = _spread((dmean, dvar), axis_name, axis_index_groups,
                          axis_name in _varying(x))
    a = scale * rstd
    dx = a * (g - mean_g - xhat * mean_gx) + (dmean + 2.0 * dvar * (xf - mean)) / n
    dscale = sum_gx.astype(scale.dtype)
    dbias = sum_g.astype(bias.dtype)
    return dx.astype(x.dtype), dscale, dbias


batch_norm_train.defvjp(_bn_fwd, _bn_bwd)


class BatchNorm(nn.BatchNorm):
    """Batch normalization over N, H, W of NHWC inputs (any rank: all axes but the last).

    ``train=True`` normalizes with the statistics of the current batch and updates the running
    statistics in the ``batch_stats`` collection (``ra = momentum * ra + (1 - momentum) * batch``;
    the variance is the biased batch variance, as Flax/TF; apply with ``mutable=['batch_stats']``).
    ``train=False`` normalizes with the running statistics.

    Attributes (from ``flax.linen.BatchNorm``): ``momentum`` (0.9 = PyTorch's momentum 0.1;
    EfficientNet uses 0.99), ``epsilon`` (PyTorch 1e-5; TF/EfficientNet 1e-3), ``axis_name``
    (a pmap/shard_map axis name such as 'batch': batch statistics are averaged over it, i.e.
    synchronized BatchNorm; None keeps them per device), ``scale_init`` (zeros for a
    zero-initialized residual branch), ``dtype``, ``param_dtype``.
    Shapes: x (..., C) -> (..., C); params ``scale``, ``bias`` (C,); batch_stats ``mean``, ``var`` (C,).

    Training (``train=True``) with bfloat16 or float32 inputs, ``dtype`` and ``param_dtype``, the
    last axis as features and no ``mask`` runs ``batch_norm_train``: Flax's variables and
    numbers (to float rounding) with a hand-written VJP, without the float32 copies of whole
    activations Flax's autodiff writes (it is reverse-mode only: no ``jax.jvp`` through it).
    Other cases (float16/float64, another ``axis``, ``mask``, ``force_float32_reductions=False``,
    backends other than the CPU, where it was not measured) and evaluation run Flax's code.
    Forward + backward of BatchNorm + ReLU at batch 16, 56 px, 256 channels on the 2-core Xeon
    (experiments/xla_cpu_conv/README.md): bf16 239 -> 107 ms, float32 169 -> 97 ms.
    """

    momentum: float = 0.9
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, train: bool = False, *, mask=None):  # type: ignore[override]
        if not train or self.use_running_average is not None or not self._fast_path(x, mask):
            return super().__call__(x, use_running_average=not train, mask=mask)
        return self._train_fast(x)

    def _fast_path(self, x, mask) -> bool:
        x = jnp.asarray(x)
        stats = jnp.promote_types(self.dtype or x.dtype, jnp.float32)
        out_ok = self.dtype is None or jnp.dtype(self.dtype) in _FAST_DTYPES
        axes = self.axis if isinstance(self.axis, (tuple, list)) else (self.axis,)
        # CPU only: measured there; XLA:GPU/TPU fuse Flax's converts into their reductions.
        return (jax.default_backend() == "cpu" and mask is None
                and self.force_float32_reductions and x.ndim >= 1
                and tuple(a % x.ndim for a in axes) == (x.ndim - 1,)
                and x.dtype in _FAST_DTYPES and stats == jnp.float32 and out_ok
                and jnp.dtype(self.param_dtype) in _FAST_DTYPES)

    def _train_fast(self, x):
        # Variables created exactly as flax.linen.BatchNorm.__call__ creates them (same names,
        # collections, shapes, dtypes and initializers).
        c = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), (c,))
        ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), (c,))
        args = [x]
        if self.use_scale:
            scale = self.param("scale", self.scale_init, (c,), self.param_dtype)
            args.append(scale)
        else:
            scale = jnp.ones((c,), jnp.float32)
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (c,), self.param_dtype)
            args.append(bias)
        else:
            bias = jnp.zeros((c,), jnp.float32)
        out_dtype = flax_dtypes.canonicalize_dtype(*args, dtype=self.dtype)
        # Under shard_map (check_vma) parameters replicated over an axis x varies over are cast to
        # varying, as autodiff does implicitly in Flax's code: the VJP's per-device parameter
        # gradients are then summed over the axis by the cast's transpose.
        missing = tuple(sorted(_varying(x) - _varying(scale)))
        if missing:
            scale = lax.pcast(scale, missing, to="varying")
        missing = tuple(sorted(_varying(x) - _varying(bias)))
        if missing:
            bias = lax.pcast(bias, missing, to="varying")
        initializing = self.is_initializing()
        # As Flax: no cross-device averaging while initializing (the axis may not exist yet).
        y, mean, var = batch_norm_train(
            x, scale, bias, self.epsilon, jnp.dtype(out_dtype),
            None if initializing else self.axis_name, _groups(self.axis_index_groups),
            self.use_fast_variance)
        if not initializing:
            ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return y


class GroupNorm(nn.GroupNorm):
    """Group normalization (Wu & He 2018) over (H, W, C / groups) per example. ``train`` is
    accepted and ignored (no batch statistics). Defaults: 32 groups, epsilon 1e-5 (PyTorch);
    google-research/vision_transformer's ResNet hybrids use Flax's 1e-6 (pass ``epsilon=1e-6``).
    Params ``scale``, ``bias`` (C,)."""

    num_groups: int | None = 32
    epsilon: float = 1e-5

    def __call__(self, x, train: bool = False):  # type: ignore[override]
        del train
        return super().__call__(x)


class LayerNorm(nn.LayerNorm):
    """Layer normalization over the last axis. ``train`` is accepted and ignored.
    Default epsilon 1e-6 (ViT / big_vision). Params ``scale``, ``bias`` (C,), as Flax's.

    The variance is the mean of squared deviations (``use_fast_variance=False``, as PyTorch and
    oneDNN compute it): Flax's default E[x^2] - E[x]^2 loses digits, to a variance of 0, on rows
    whose mean is large against their spread. On the CPU, float32 activations with float32
    parameters (the defaults) go through oneDNN's layer normalization, one pass each way
    (``jaxvision.layers.onednn_layer_norm``, where it applies: one device, handlers loaded,
    ``lowering.conv_impl() == 'onednn'``); everything else is Flax's ``nn.LayerNorm`` with the
    same formula, and the two agree to float32 rounding. The oneDNN form has no forward-mode
    autodiff (``jax.jvp``/``jacfwd``/``hessian``): trace those under
    ``jaxvision.layers.using_conv_impl('xla')``."""

    epsilon: float = 1e-6
    use_fast_variance: bool = False

    @nn.compact
    def __call__(self, x, train: bool = False):  # type: ignore[override]
        del train
        if self._onednn_form(x):
            from jaxvision.layers import onednn_layer_norm as oln

            # Decided before the parameters exist: Flax's code below creates them otherwise.
            features = jax.ShapeDtypeStruct(x.shape[-1:], jnp.float32)
            if oln.onednn_layer_norm_applies(x, features, features):
                scale = self.param("scale", self.scale_init, features.shape, self.param_dtype)
                bias = self.param("bias", self.bias_init, features.shape, self.param_dtype)
                return oln.onednn_layer_norm(x, scale, bias, self.epsilon)
        return super().__call__(x)

    def _onednn_form(self, x) -> bool:
        """Whether this configuration is the one the oneDNN handler computes (over the last axis
        only, scale and bias, no cross-device statistics, float32 parameters and output) on a
        backend that uses oneDNN; the handler's own check (x's dtype and shape, devices,
        loaded) follows."""
        from jaxvision.layers import lowering

        def last_only(axes) -> bool:
            axes = tuple(axes) if isinstance(axes, (tuple, list)) else (axes,)
            return len(axes) == 1 and axes[0] in (-1, x.ndim - 1)

        return (x.ndim >= 1 and self.use_scale and self.use_bias
                and not self.use_fast_variance and self.axis_name is None
                and last_only(self.reduction_axes) and last_only(self.feature_axes)
                and self.dtype in (None, jnp.float32)
                and jnp.dtype(self.param_dtype) == jnp.float32
                and lowering.conv_impl() == "onednn")


def batch_norm_of(model) -> functools.partial:
    """The ``BatchNorm`` a model's layers share: its ``bn_momentum``, ``bn_epsilon`` and
    ``bn_axis_name`` fields (the last averages statistics across devices under pmap)."""
    return functools.partial(BatchNorm, momentum=model.bn_momentum, epsilon=model.bn_epsilon,
                             axis_name=model.bn_axis_name)
