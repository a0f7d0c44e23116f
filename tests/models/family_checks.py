"""Checks shared by the tests of the model families of issue 16 (Swin, EfficientNetV2, MaxViT,
CoAtNet): exact parameter counts, a tiny instance's forward in evaluation and training, feature
levels."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision import models
from jaxvision.models.features import level_info


def param_count(name: str) -> int:
    """'params' scalars of ``name`` at 1000 classes and its default resolution (eval_shape)."""
    variables = models.abstract_variables(models.create(name), models.input_shape(name))
    return models.count_params(variables["params"])


def random_variables(model, x, seed: int = 0):
    """Variables of ``model``'s shapes filled with N(0, 0.1) (BatchNorm variances 1 + |N(0, 1)|),
    without compiling its initializers (XLA:CPU compiles dozens of RNG calls slowly)."""
    shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
    rng = np.random.default_rng(seed)

    def fill(path, s):
        v = rng.standard_normal(s.shape).astype(np.float32)
        return 1.0 + np.abs(v) if path[-1].key == "var" else 0.1 * v

    return jax.tree_util.tree_map_with_path(fill, shapes)


def check_forward(model, size: int, num_classes: int, *, has_batch_stats: bool):
    """Eval forward of ``model`` on a (2, size, size, 3) batch: logits (2, num_classes), finite;
    a training step with stochastic depth differs between two drop_path keys (the models have
    drop_path_rate > 0), and updates BatchNorm statistics when the model has them."""
    x = jax.random.normal(jax.random.key(0), (2, size, size, 3))
    variables = random_variables(model, x)
    assert ("batch_stats" in variables) == has_batch_stats
    logits = jax.jit(functools.partial(model.apply, train=False))(variables, x)
    assert logits.shape == (2, num_classes) and bool(jnp.all(jnp.isfinite(logits)))

    @jax.jit
    def train(key):
        return model.apply(variables, x, train=True, mutable=["batch_stats"],
                           rngs={"drop_path": key, "dropout": key})

    a, updates = train(jax.random.key(2))
    b, _ = train(jax.random.key(3))
    assert not np.allclose(a, b), "stochastic depth should make two training passes differ"
    if has_batch_stats:
        before = jax.tree.leaves(variables["batch_stats"])
        after = jax.tree.leaves(updates["batch_stats"])
        assert any(not np.allclose(u, v) for u, v in zip(before, after, strict=True))


def check_levels(name: str, overrides: dict, size: int, expected: list[tuple[int, int]]):
    """``models.create(name, features_only=True, **overrides)`` at a (1, size, size, 3) input
    returns maps of these (stride, channels), as ``level_info`` reports them."""
    model = models.create(name, features_only=True, **overrides)
    info = level_info(models.create(name, num_classes=0, **overrides), (1, size, size, 3))
    assert [(i["stride"], i["channels"]) for i in info] == expected
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    maps = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x)[0], x)
    assert [m.shape for m in maps] == [(1, size // s, size // s, c) for s, c in expected]


def levels_of(name: str) -> list[tuple[int, int]]:
    """(stride, channels) of every level of the full-size model (``model_info``)."""
    return [(i["stride"], i["channels"]) for i in models.model_info(name)["feature_info"]]
