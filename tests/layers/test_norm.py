"""BatchNorm (train vs eval, momentum, cross-device statistics), GroupNorm and LayerNorm against
numpy."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.layers import BatchNorm, GroupNorm, LayerNorm


def _x(shape=(4, 3, 5, 6), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 2.0 + 0.5


def test_batchnorm_train_uses_and_updates_batch_stats():
    x = _x()
    bn = BatchNorm(momentum=0.7, epsilon=1e-3)
    variables = bn.init(jax.random.key(0), x)
    chex.assert_trees_all_close(variables["batch_stats"], {"mean": np.zeros(6), "var": np.ones(6)})
    y, state = bn.apply(variables, x, train=True, mutable=["batch_stats"])
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    chex.assert_trees_all_close(y, (x - mean) / np.sqrt(var + 1e-3), atol=1e-5)
    # running = momentum * running + (1 - momentum) * batch
    chex.assert_trees_all_close(state["batch_stats"]["mean"], 0.3 * mean, atol=1e-6)
    chex.assert_trees_all_close(state["batch_stats"]["var"], 0.7 + 0.3 * var, atol=1e-5)


def test_batchnorm_eval_uses_running_stats():
    x = _x(seed=1)
    bn = BatchNorm(epsilon=1e-5)
    variables = bn.init(jax.random.key(0), x)
    mean, var = np.linspace(-1, 1, 6, dtype=np.float32), np.linspace(0.5, 2, 6, dtype=np.float32)
    scale, bias = np.arange(1, 7, dtype=np.float32), np.full(6, 0.25, np.float32)
    variables = {"params": {"scale": scale, "bias": bias}, "batch_stats": {"mean": mean, "var": var}}
    y = bn.apply(variables, x)  # train=False by default
    chex.assert_trees_all_close(y, (x - mean) / np.sqrt(var + 1e-5) * scale + bias, atol=1e-5)
    # evaluation does not need (or change) mutable state
    y2, state = bn.apply(variables, x, train=False, mutable=["batch_stats"])
    chex.assert_trees_all_close(state["batch_stats"], variables["batch_stats"])


def test_batchnorm_axis_name_averages_across_devices():
    # Two "devices" via vmap with an axis name: statistics must be those of the whole batch.
    x = _x((8, 2, 2, 3), seed=2)
    bn = BatchNorm(momentum=0.0, axis_name="batch")
    variables = BatchNorm().init(jax.random.key(0), x)
    apply = functools.partial(bn.apply, train=True, mutable=["batch_stats"])
    y, state = jax.vmap(apply, in_axes=(None, 0), axis_name="batch")(variables, x.reshape(2, 4, 2, 2, 3))
    chex.assert_trees_all_close(y.reshape(x.shape), (x - x.mean((0, 1, 2))) / np.sqrt(x.var((0, 1, 2)) + 1e-5), atol=1e-5)
    chex.assert_trees_all_close(state["batch_stats"]["mean"][0], x.mean((0, 1, 2)), atol=1e-6)
    # without the axis name, each device normalizes with its own half
    y_local, _ = jax.vmap(functools.partial(BatchNorm(momentum=0.0).apply, train=True, mutable=["batch_stats"]),
                          in_axes=(None, 0))(variables, x.reshape(2, 4, 2, 2, 3))
    assert not np.allclose(y_local, y, atol=1e-3)


def test_batchnorm_bf16():
    x = jnp.asarray(_x(seed=3))
    bn = BatchNorm(dtype=jnp.bfloat16)
    variables = bn.init(jax.random.key(0), x)
    y, state = bn.apply(variables, x, train=True, mutable=["batch_stats"])
    assert y.dtype == jnp.bfloat16
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves((variables, state)))


@pytest.mark.parametrize("groups", [1, 2, 3])
def test_groupnorm_matches_numpy(groups):
    x = _x((2, 3, 4, 6), seed=4)
    gn = GroupNorm(num_groups=groups, epsilon=1e-5)
    variables = gn.init(jax.random.key(0), x)
    y = gn.apply(variables, x, train=True)  # train is accepted and ignored
    xg = x.reshape(2, 3, 4, groups, 6 // groups).astype(np.float64)
    ref = (xg - xg.mean((1, 2, 4), keepdims=True)) / np.sqrt(xg.var((1, 2, 4), keepdims=True) + 1e-5)
    chex.assert_trees_all_close(y, ref.reshape(x.shape), atol=1e-5)
    assert "batch_stats" not in variables


def test_layernorm_matches_numpy():
    x = _x((2, 5, 8), seed=5)
    ln = LayerNorm()
    variables = ln.init(jax.random.key(0), x)
    ref = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6)
    chex.assert_trees_all_close(ln.apply(variables, x), ref, atol=1e-5)
