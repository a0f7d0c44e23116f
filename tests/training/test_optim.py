"""Optimizers, schedules, losses and loss scaling against hand computations (numpy)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvision.config import base_config
from jaxvision.training import losses, optimizers, precision


def _cfg(**kw):
    c = base_config()
    c.total_steps = 100
    with c.ignore_type():
        for k, v in kw.items():
            node = c
            *path, last = k.split(".")
            for p in path:
                node = node[p]
            node[last] = v
    return c


def test_cosine_with_warmup_matches_formula():
    c = _cfg(**{"schedule.name": "cosine", "schedule.base_lr": 0.1, "schedule.warmup_steps": 10,
                "schedule.lr_batch_reference": 256, "batch_size": 512})
    s = optimizers.build_schedule(c, total_steps=100, steps_per_epoch=10)
    peak = 0.1 * 512 / 256
    assert float(s(5)) == pytest.approx(peak * 5 / 10)
    for t in (10, 40, 99):
        want = 0.5 * peak * (1 + np.cos(np.pi * (t - 10) / 90))
        assert float(s(t)) == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_efficientnet_exponential_staircase():
    c = _cfg(**{"schedule.name": "exponential", "schedule.base_lr": 0.016,
                "schedule.lr_batch_reference": 256, "batch_size": 1024,
                "schedule.warmup_epochs": 5.0, "schedule.decay_epochs": 2.4,
                "schedule.decay_rate": 0.97})
    spe = 1251
    s = optimizers.build_schedule(c, total_steps=350 * spe, steps_per_epoch=spe)
    peak = 0.016 * 4
    assert float(s(spe)) == pytest.approx(peak * spe / (5 * spe), rel=1e-5)
    t = 100 * spe  # lr = peak * 0.97 ** floor(t / (2.4 spe)) after warm-up (TF exponential_decay)
    assert float(s(t)) == pytest.approx(peak * 0.97 ** np.floor(t / (2.4 * spe)), rel=1e-5)


def test_step_schedule_boundaries_in_epochs():
    c = _cfg(**{"schedule.name": "step", "schedule.base_lr": 0.1,
                "schedule.boundaries_epochs": (3, 6), "schedule.step_factor": 0.1})
    s = optimizers.build_schedule(c, total_steps=100, steps_per_epoch=10)
    assert [float(s(t)) for t in (0, 29, 30, 59, 60)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001])


def test_decay_mask_excludes_norms_and_biases():
    params = {"conv": {"kernel": jnp.ones((3, 3, 1, 4)), "bias": jnp.ones(4)},
              "bn": {"scale": jnp.ones(4), "bias": jnp.ones(4)},
              "pos_embed": jnp.ones((1, 4, 4))}
    m = optimizers.decay_mask(params, no_decay_regex="pos_embed")
    assert m == {"conv": {"kernel": True, "bias": False}, "bn": {"scale": False, "bias": False},
                 "pos_embed": False}


def test_sgd_coupled_weight_decay_and_freeze():
    params = {"w": jnp.array([[1.0, -2.0]]), "b": jnp.array([0.5]),
              "head": {"kernel": jnp.ones((1, 1))}}
    grads = {"w": jnp.array([[0.1, 0.2]]), "b": jnp.array([0.3]),
             "head": {"kernel": jnp.ones((1, 1))}}
    c = _cfg(**{"optimizer.name": "sgd", "optimizer.momentum": 0.9, "optimizer.weight_decay": 0.01,
                "optimizer.freeze": "^head/", "schedule.name": "constant", "schedule.base_lr": 0.1})
    tx, _ = optimizers.build_optimizer(c, params, total_steps=10, steps_per_epoch=10)
    st = tx.init(params)
    p = params
    mom_w, mom_b = np.zeros((1, 2)), np.zeros(1)
    w, b = np.array([[1.0, -2.0]]), np.array([0.5])
    for _ in range(3):
        u, st = tx.update(grads, st, p)
        p = optax.apply_updates(p, u)
        mom_w = 0.9 * mom_w + (np.array([[0.1, 0.2]]) + 0.01 * w)  # kernel: grad + wd * w
        mom_b = 0.9 * mom_b + np.array([0.3])  # bias: no decay
        w, b = w - 0.1 * mom_w, b - 0.1 * mom_b
    np.testing.assert_allclose(p["w"], w, rtol=1e-6)
    np.testing.assert_allclose(p["b"], b, rtol=1e-6)
    np.testing.assert_array_equal(p["head"]["kernel"], params["head"]["kernel"])  # frozen


def test_rmsprop_is_tf_style():
    """TF1 RMSProp: ms starts at 1, eps inside the sqrt, momentum on the scaled gradient."""
    params = {"w": jnp.array([[1.0, 2.0]])}
    c = _cfg(**{"optimizer.name": "rmsprop", "optimizer.decay": 0.9, "optimizer.momentum": 0.9,
                "optimizer.eps": 1e-3, "schedule.name": "constant", "schedule.base_lr": 0.01})
    tx, _ = optimizers.build_optimizer(c, params, total_steps=10, steps_per_epoch=10)
    st, p = tx.init(params), params
    ms, mom, w = np.ones((1, 2)), np.zeros((1, 2)), np.array([[1.0, 2.0]])
    for g in ([[0.5, -1.0]], [[0.2, 0.1]]):
        u, st = tx.update({"w": jnp.array(g)}, st, p)
        p = optax.apply_updates(p, u)
        ms = 0.9 * ms + 0.1 * np.square(g)
        mom = 0.9 * mom + np.array(g) / np.sqrt(ms + 1e-3)
        w = w - 0.01 * mom
    np.testing.assert_allclose(p["w"], w, rtol=1e-5)


def test_lr_multipliers_by_regex():
    params = {"backbone": {"kernel": jnp.ones((2, 2))}, "head": {"kernel": jnp.ones((2, 2))}}
    grads = jax.tree.map(jnp.ones_like, params)
    c = _cfg(**{"optimizer.name": "sgd", "optimizer.momentum": 0.0,
                "optimizer.lr_multipliers": (("^backbone/", 0.1),),
                "schedule.name": "constant", "schedule.base_lr": 1.0})
    tx, _ = optimizers.build_optimizer(c, params, total_steps=10, steps_per_epoch=10)
    u, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(u["backbone"]["kernel"], -0.1)
    np.testing.assert_allclose(u["head"]["kernel"], -1.0)


def test_grad_accumulation_equals_big_batch():
    """MultiSteps(k=2) over two half batches == one step on the full batch (linear model, SGD)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(8,)).astype(np.float32)
    params = {"w": jnp.zeros(3)}

    def loss(p, xb, yb):
        return jnp.mean((xb @ p["w"] - yb) ** 2)

    outs = []
    for k, chunks in ((1, [slice(0, 8)]), (2, [slice(0, 4), slice(4, 8)])):
        c = _cfg(**{"optimizer.name": "sgd", "optimizer.momentum": 0.9, "grad_accum_steps": k,
                    "schedule.name": "constant", "schedule.base_lr": 0.1})
        tx, _ = optimizers.build_optimizer(c, params, total_steps=10, steps_per_epoch=10)
        st, p = tx.init(params), params
        for sl in chunks * 2:  # two optimizer updates
            u, st = tx.update(jax.grad(loss)(p, x[sl], y[sl]), st, p)
            p = optax.apply_updates(p, u)
        outs.append(p)
    chex.assert_trees_all_close(outs[0], outs[1], rtol=1e-5)


def test_cross_entropy_label_smoothing_and_class_weights():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]], np.float32)
    labels = np.array([0, 2])
    eps, w = 0.1, np.array([1.0, 2.0, 3.0], np.float32)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    t = np.eye(3)[labels] * (1 - eps) + eps / 3
    want = -(t * logp).sum(-1) * w[labels]
    got = losses.cross_entropy(jnp.asarray(logits, jnp.bfloat16).astype(jnp.float32), labels,
                               label_smoothing=eps, class_weights=w)
    np.testing.assert_allclose(got, want, rtol=1e-2)
    got32 = losses.cross_entropy(logits, labels, label_smoothing=eps, class_weights=w)
    np.testing.assert_allclose(got32, want, rtol=1e-6)
    assert got32.dtype == jnp.float32
    assert float(losses.masked_mean(jnp.array([1.0, 3.0, 100.0]), jnp.array([1, 1, 0], bool))) == 2.0


def test_loss_scale_skips_non_finite_and_adapts():
    ls = {"scale": jnp.float32(1024.0), "good_steps": jnp.int32(5)}
    bad = precision.update_loss_scale(ls, jnp.asarray(False))
    assert float(bad["scale"]) == 512.0 and int(bad["good_steps"]) == 0
    ls = {"scale": jnp.float32(1024.0), "good_steps": jnp.int32(precision.GROWTH_INTERVAL - 1)}
    grown = precision.update_loss_scale(ls, jnp.asarray(True))
    assert float(grown["scale"]) == 2048.0 and int(grown["good_steps"]) == 0
    assert not bool(precision.all_finite({"a": jnp.array([1.0, jnp.inf])}))


def test_train_step_skips_a_non_finite_step_and_keeps_the_ema():
    """The train step with float16 loss scaling and EMA: a batch whose gradients are not finite
    changes only the step counter and halves the scale; a finite one moves the parameters, and
    the EMA by TF's num_updates decay (computed in numpy from the parameters)."""
    import flax.linen as nn

    from jaxvision.training import state as state_lib
    from jaxvision.training import steps

    model = nn.Dense(3)
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    params = model.init(jax.random.key(0), x)["params"]
    tx = optax.sgd(0.1)
    st = state_lib.TrainState.create(params=params, batch_stats={}, tx=tx, rng=jax.random.key(1),
                                     ema=True, loss_scale=True)

    class Model:  # the step's model.apply signature: (variables, x, train, mutable, rngs)
        def apply(self, variables, images, train, mutable, rngs):
            return model.apply({"params": variables["params"]}, images), {}

    step = jax.jit(steps.make_train_step(Model(), num_classes=3, ema_decay=0.9))
    labels = np.array([0, 1, 2, 0], np.int32)
    bad, metrics = step(st, {"image": np.full_like(x, np.inf), "label": labels})
    assert float(metrics["skipped"]) == 1.0 and int(bad.step) == 1
    assert float(bad.loss_scale["scale"]) == 2.0**14
    chex.assert_trees_all_equal(bad.params, st.params)
    chex.assert_trees_all_equal(bad.ema_params, st.ema_params)

    good, metrics = step(bad, {"image": x, "label": labels})
    assert float(metrics["skipped"]) == 0.0 and int(good.step) == 2
    assert float(good.loss_scale["scale"]) == 2.0**14
    assert not np.allclose(good.params["kernel"], params["kernel"])
    # EMA after the second step: num_updates n = 2, decay min(0.9, 3 / 12).
    d = 3 / 12
    want = jax.tree.map(lambda e, p: d * np.asarray(e) + (1 - d) * np.asarray(p),
                        st.ema_params, good.params)
    chex.assert_trees_all_close(good.ema_params, want, rtol=1e-6)
