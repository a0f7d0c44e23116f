"""jaxvision's BatchNorm training path (``norm.batch_norm_train``: hand-written VJP, per-channel
sums from ``csrc/bn_stats.cc`` or XLA) against ``flax.linen.BatchNorm`` itself: outputs, running
statistics, gradients of x / scale / bias, variables, under pmap and shard_map with axis_name."""


import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from jaxvision.layers import norm, onednn_build
from jaxvision.layers.norm import BatchNorm


@pytest.fixture(params=["xla", "native"])
def sums(request, monkeypatch):
    """Run each test with the per-channel sums as XLA reductions and as the bn_stats custom
    calls (the test session has 8 simulated devices, where the library keeps XLA's)."""
    if request.param == "native":
        monkeypatch.setattr(onednn_build, "single_device", lambda: True)
        if not norm.native_sums_used(jnp.bfloat16):
            pytest.skip("bn_stats handlers unavailable here")
    else:
        monkeypatch.setattr(onednn_build, "single_device", lambda: False)
    return request.param


def _x(shape, dtype, seed=0, loc=0.5, spread=2.0):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * spread + loc
    return jnp.asarray(x, dtype)


def _params(c, seed=1):
    r = np.random.default_rng(seed)
    return {"scale": jnp.asarray(r.uniform(0.5, 2.0, c), jnp.float32),
            "bias": jnp.asarray(r.uniform(-1.0, 1.0, c), jnp.float32)}


def _both(dtype, **kw):
    """(ours, flax's) with the same attributes; ours' ``train`` flag, Flax's use_running_average."""
    ours = BatchNorm(dtype=dtype, **kw)
    ref = nn.BatchNorm(dtype=dtype, momentum=kw.pop("momentum", 0.9),
                       epsilon=kw.pop("epsilon", 1e-5), **kw)
    return ours, ref


def _train_and_grads(apply, variables, x, w, stats_weight=0.0):
    """y, new batch_stats and d(loss)/d(params, x); loss = sum(sin(y) * w) (+ the new running
    statistics times ``stats_weight``, which differentiates through them too)."""
    def loss(params, x):
        y, state = apply({"params": params, "batch_stats": variables["batch_stats"]}, x)
        stats = state["batch_stats"]
        extra = stats_weight * jnp.sum(stats["mean"] * jnp.arange(1.0, 1 + stats["mean"].size)
                                       + stats["var"] * 0.5)
        return jnp.sum(jnp.sin(y.astype(jnp.float32)) * w) + extra, (y, stats)

    (_, (y, stats)), grads = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))(
        variables["params"], x)
    return y, stats, grads


def _close(a, b, dtype):
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if dtype == jnp.float32:
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5 * max(1.0, np.abs(b).max()))
    else:  # a couple of bf16 roundings (8-bit mantissa) of values of this size
        np.testing.assert_allclose(a, b, rtol=2e-2, atol=2e-2 * max(1.0, np.abs(b).max()))


def _check_against_flax(shape, dtype, stats_weight=0.0, params=True, **kw):
    x = _x(shape, dtype)
    ours, ref = _both(dtype, **kw)
    v_ours = ours.init(jax.random.key(0), x, train=True)
    v_ref = ref.init(jax.random.key(0), x, use_running_average=False)
    spec = lambda t: jax.tree.map(lambda a: (a.shape, a.dtype), t)  # noqa: E731
    assert spec(v_ours) == spec(v_ref)  # same collections, names, shapes, dtypes
    jax.tree.map(np.testing.assert_array_equal, v_ours, v_ref)  # and initial values
    v_ours = dict(v_ours, params=v_ours.get("params", {}))
    if params:
        v_ours = dict(v_ours, params=_params(shape[-1]))
    w = _x(shape, jnp.float32, seed=7, loc=0.0, spread=1.0)
    got = _train_and_grads(lambda v, x: ours.apply(v, x, train=True, mutable=["batch_stats"]),
                           v_ours, x, w, stats_weight)
    want = _train_and_grads(lambda v, x: ref.apply(v, x, use_running_average=False,
                                                   mutable=["batch_stats"]),
                            v_ours, x, w, stats_weight)
    assert got[0].dtype == want[0].dtype and got[0].shape == want[0].shape
    assert jax.tree.map(lambda a: a.dtype, got[2]) == jax.tree.map(lambda a: a.dtype, want[2])
    jax.tree.map(lambda a, b: _close(a, b, dtype), got, want)
    return got


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (1, 7, 5, 3), (3, 5, 7, 130), (5, 13, 17), (9, 4)])
def test_matches_flax(sums, dtype, shape):
    _check_against_flax(shape, dtype)


@pytest.mark.parametrize("momentum, epsilon", [(0.0, 1e-3), (0.99, 1e-5), (0.7, 1e-1)])
def test_momentum_epsilon_variants(sums, momentum, epsilon):
    _check_against_flax((3, 4, 4, 5), jnp.float32, momentum=momentum, epsilon=epsilon)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_two_pass_variance_and_absent_params(sums, dtype):
    _check_against_flax((2, 5, 3, 7), dtype, use_fast_variance=False)
    _check_against_flax((2, 5, 3, 7), dtype, use_scale=False, use_bias=False, params=False)


def test_zero_scale_init(sums):
    # a zero-initialized residual branch: y is the bias, dx 0, d scale nonzero
    y, _, grads = _check_against_flax((2, 3, 3, 4), jnp.float32, params=False,
                                      scale_init=nn.initializers.zeros)
    np.testing.assert_array_equal(np.asarray(grads[1]), 0.0)
    assert np.abs(np.asarray(grads[0]["scale"])).max() > 0


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_gradient_through_running_statistics(sums, dtype):
    # nobody trains through batch_stats, but the derivative must still be Flax's
    _check_against_flax((3, 2, 5, 4), dtype, stats_weight=3.0, momentum=0.5)


def test_constant_channel_and_single_element(sums):
    # variance exactly 0 (N=1 of one pixel, and a constant channel): rsqrt(eps), no NaN
    _check_against_flax((1, 1, 1, 3), jnp.float32, stats_weight=1.0)
    x = _x((2, 3, 3, 4), jnp.float32).at[..., 1].set(0.75)
    ours, ref = _both(jnp.float32)
    v = ours.init(jax.random.key(0), x)
    w = _x(x.shape, jnp.float32, seed=3)
    got = _train_and_grads(lambda v, x: ours.apply(v, x, train=True, mutable=["batch_stats"]),
                           v, x, w)
    want = _train_and_grads(lambda v, x: ref.apply(v, x, use_running_average=False,
                                                   mutable=["batch_stats"]), v, x, w)
    assert np.isfinite(np.asarray(got[2][1])).all()
    jax.tree.map(lambda a, b: _close(a, b, jnp.float32), got, want)


def test_eval_and_other_dtypes_are_flax(sums):
    ours, ref = _both(jnp.float32)
    x = _x((2, 3, 3, 4), jnp.float32)
    v = ours.init(jax.random.key(0), x)
    v = {"params": _params(4), "batch_stats": {"mean": jnp.linspace(-1, 1, 4),
                                                "var": jnp.linspace(0.5, 2, 4)}}
    np.testing.assert_array_equal(ours.apply(v, x, train=False),
                                  ref.apply(v, x, use_running_average=True))
    assert ours._fast_path(x, None)
    assert not ours._fast_path(x.astype(jnp.float16), None)
    assert not BatchNorm(dtype=jnp.float16)._fast_path(x, None)
    assert not ours._fast_path(x, jnp.ones(x.shape, bool))  # a mask: Flax's code
    assert not BatchNorm(axis=1)._fast_path(x, None)
    with pytest.MonkeyPatch.context() as mp:  # GPU/TPU keep Flax's formulation
        mp.setattr(norm.jax, "default_backend", lambda: "gpu")
        assert not ours._fast_path(x, None)
    x16 = x.astype(jnp.float16)
    y16, _ = BatchNorm(dtype=jnp.float16).apply(v, x16, train=True, mutable=["batch_stats"])
    r16, _ = nn.BatchNorm(dtype=jnp.float16, momentum=0.9).apply(
        v, x16, use_running_average=False, mutable=["batch_stats"])
    np.testing.assert_array_equal(y16, r16)


def _synced(apply_fn, mapper):
    """Gradients of sum(sin(y) * w) over 8 devices, each normalizing its own (2, 3, 3, 5) slice
    with statistics synchronized over 'batch'."""
    x = _x((8, 2, 3, 3, 5), jnp.float32, seed=4)
    w = _x(x.shape, jnp.float32, seed=5, loc=0.0, spread=1.0)
    variables = {"params": _params(5), "batch_stats": {"mean": jnp.zeros(5), "var": jnp.ones(5)}}

    def per_device(params, x, w):
        y, state = apply_fn({"params": params, "batch_stats": variables["batch_stats"]}, x)
        stats = state["batch_stats"]  # differentiated through too (their pmean's transpose)
        extra = jnp.sum(stats["mean"] * jnp.arange(1.0, 6.0)) + 0.5 * jnp.sum(stats["var"])
        return jnp.sum(jnp.sin(y) * w) + extra, (y, stats)

    return mapper(per_device, variables["params"], x, w)


def _pmap(per_device, params, x, w):
    grad = jax.pmap(jax.grad(per_device, (0, 1), has_aux=True), axis_name="batch",
                    in_axes=(None, 0, 0))
    return grad(params, x, w)


def _shard_map(per_device, params, x, w):
    mesh = Mesh(np.array(jax.devices()[:8]), ("batch",))

    def body(params, x, w):
        loss, (y, stats) = per_device(params, x[0], w[0])
        return jax.lax.psum(loss, "batch"), y[None], stats["mean"][None], stats["var"][None]

    f = jax.shard_map(body, mesh=mesh, in_specs=(P(), P("batch"), P("batch")),
                      out_specs=(P(), P("batch"), P("batch"), P("batch")))

    def loss(params, x, w):
        total, y, mean, var = f(params, x, w)
        return total, (y, {"mean": mean, "var": var})

    return jax.jit(jax.grad(loss, (0, 1), has_aux=True))(params, x, w)


# axis_index_groups is pmap-only in JAX
@pytest.mark.parametrize("mapper, groups", [(_pmap, None), (_pmap, [[0, 1, 2, 3], [4, 5, 6, 7]]),
                                            (_shard_map, None)],
                         ids=["pmap", "pmap-groups", "shard_map"])
def test_synchronized_statistics(sums, mapper, groups):
    kw = dict(momentum=0.5, axis_name="batch", axis_index_groups=groups)
    ours, ref = BatchNorm(**kw), nn.BatchNorm(**kw)
    got = _synced(lambda v, x: ours.apply(v, x, train=True, mutable=["batch_stats"]), mapper)
    want = _synced(lambda v, x: ref.apply(v, x, use_running_average=False,
                                          mutable=["batch_stats"]), mapper)
    jax.tree.map(lambda a, b: _close(a, b, jnp.float32), got, want)
    # really synchronized: the statistics differ from the per-device ones
    local = _synced(lambda v, x: BatchNorm(momentum=0.5).apply(
        v, x, train=True, mutable=["batch_stats"]), mapper)
    assert not np.allclose(np.asarray(local[1][0]), np.asarray(got[1][0]), atol=1e-3)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("shape", [(1, 3), (7, 1), (5, 17), (3000, 40), (20, 9, 11, 70)])
def test_native_sums_against_numpy(dtype, shape, monkeypatch):
    monkeypatch.setattr(onednn_build, "single_device", lambda: True)
    if not norm.native_sums_used(dtype):
        pytest.skip("bn_stats handlers unavailable here")
    x, dy = _x(shape, dtype, seed=8), _x(shape, dtype, seed=9, loc=0.0)
    c = shape[-1]
    mean = jnp.asarray(np.linspace(-1, 1, c), jnp.float32)
    rstd = jnp.asarray(np.linspace(0.5, 2, c), jnp.float32)
    s1, s2 = jax.jit(norm._moment_sums)(x)
    g1, g2 = jax.jit(norm._grad_sums)(x, dy, mean, rstd)
    xf = np.asarray(x, np.float64).reshape(-1, c)
    gf = np.asarray(dy, np.float64).reshape(-1, c)
    xhat = (xf - np.asarray(mean, np.float64)) * np.asarray(rstd, np.float64)
    for got, want in [(s1, xf.sum(0)), (s2, (xf * xf).sum(0)), (g1, gf.sum(0)),
                      (g2, (gf * xhat).sum(0))]:
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5,
                                   atol=1e-5 * np.abs(want).max() + 1e-6)
    # the chunking is fixed: the same sums whatever thread took which chunk
    np.testing.assert_array_equal(np.asarray(s1), np.asarray(jax.jit(norm._moment_sums)(x)[0]))


def test_gradient_of_gradient(sums):
    # A gradient penalty (the gradient of a function of an input gradient) passes through
    # BatchNorm's custom VJP and the custom calls' own derivatives, as through Flax's.
    x, w = _x((3, 4, 4, 5), jnp.float32), _x((3, 4, 4, 5), jnp.float32, seed=2)
    ours, ref = _both(jnp.float32)
    v = ref.init(jax.random.key(0), x, use_running_average=False)

    def penalty(apply, params, x):
        def f(x):
            y, _ = apply({**v, "params": params}, x)
            return jnp.sum(jnp.sin(y) * w)
        return jnp.sum(jnp.square(jax.grad(f)(x)))

    ours_apply = lambda v_, x: ours.apply(v_, x, train=True, mutable=["batch_stats"])  # noqa: E731
    ref_apply = lambda v_, x: ref.apply(v_, x, use_running_average=False,  # noqa: E731
                                        mutable=["batch_stats"])
    got = jax.jit(jax.grad(penalty, (1, 2)), static_argnums=0)(ours_apply, v["params"], x)
    want = jax.grad(penalty, (1, 2))(ref_apply, v["params"], x)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4 * float(np.abs(b).max()))


def test_large_batch_variance_as_precise_as_xla(sums):
    # 1M rows per channel, mean 100, sd 1: E[x^2] - mean^2 cancels ~4 digits (Flax's fast
    # variance), so the sums' own rounding shows; one float32 running sum per chunk gave 7e-3
    # relative error where XLA's reduction gives 2e-3. Reference: float64 numpy.
    x = _x((16, 256, 256, 2), jnp.float32, seed=3, loc=100.0, spread=1.0)
    ours, _ = _both(jnp.float32)
    v = ours.init(jax.random.key(0), x[:1], train=False)
    _, state = jax.jit(lambda x: ours.apply(v, x, train=True, mutable=["batch_stats"]))(x)
    var = (np.asarray(state["batch_stats"]["var"]) - 0.9 * 1.0) / 0.1  # undo the running average
    want = np.asarray(x, np.float64).reshape(-1, 2).var(0)
    assert np.max(np.abs(var - want) / want) < 3e-3
