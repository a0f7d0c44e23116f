"""Dropout and DropPath: expected value kept in training, identity in evaluation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.layers import Dropout, DropPath


def test_drop_path_keeps_mean_and_drops_whole_examples():
    rate, n = 0.3, 20000
    x = jnp.ones((n, 2, 2, 3))
    y = DropPath(rate).apply({}, x, train=True, rngs={"drop_path": jax.random.key(0)})
    y = np.asarray(y)
    per_example = y.reshape(n, -1)
    # every example is either all zero or all 1 / keep_prob
    assert np.all((per_example == 0).all(1) | np.isclose(per_example, 1 / 0.7).all(1))
    dropped = (per_example == 0).all(1).mean()
    sigma = np.sqrt(rate * (1 - rate) / n)
    assert abs(dropped - rate) < 4 * sigma
    assert abs(y.mean() - 1.0) < 4 * sigma / 0.7


def test_drop_path_identity_in_eval_and_at_rate_zero():
    x = jax.random.normal(jax.random.key(1), (4, 3, 3, 2))
    chex.assert_trees_all_equal(DropPath(0.5).apply({}, x, train=False), x)
    chex.assert_trees_all_equal(DropPath(0.0).apply({}, x, train=True), x)  # needs no rng


def test_drop_path_uses_its_own_rng_stream():
    x = jnp.ones((64, 1))
    a = DropPath(0.5).apply({}, x, train=True, rngs={"drop_path": jax.random.key(0), "dropout": jax.random.key(9)})
    b = DropPath(0.5).apply({}, x, train=True, rngs={"drop_path": jax.random.key(0), "dropout": jax.random.key(5)})
    c = DropPath(0.5).apply({}, x, train=True, rngs={"drop_path": jax.random.key(1)})
    chex.assert_trees_all_equal(a, b)
    assert not np.array_equal(a, c)


def test_dropout_mean_and_eval_identity():
    x = jnp.ones((100000,))
    y = np.asarray(Dropout(0.25).apply({}, x, train=True, rngs={"dropout": jax.random.key(2)}))
    assert set(np.unique(y)) <= {0.0, np.float32(1 / 0.75)}
    assert abs(y.mean() - 1.0) < 4 * np.sqrt(0.25 * 0.75 / 1e5) / 0.75
    chex.assert_trees_all_equal(Dropout(0.25).apply({}, x, train=False), x)


def test_drop_path_keeps_dtype():
    x = jnp.ones((8, 4), jnp.bfloat16)
    y = DropPath(0.5).apply({}, x, train=True, rngs={"drop_path": jax.random.key(0)})
    assert y.dtype == jnp.bfloat16
