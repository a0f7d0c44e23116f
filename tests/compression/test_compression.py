import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvision.compression import (
    global_magnitude_masks,
    polynomial_sparsity,
    prune,
    prune_finetune,
    quantize_params,
    quantize_run,
    quantized_apply,
    sparsity_report,
    stored_size,
)
from jaxvision.compression.quantization import dequantize
from tests.robustness import toy


def _random_params(seed=0):
    k = jax.random.split(jax.random.key(seed), 4)
    return {
        "conv": {
            "kernel": jax.random.normal(k[0], (3, 3, 4, 8)),
            "bias": jax.random.normal(k[1], (8,)),
        },
        "head": {"kernel": jax.random.normal(k[2], (8, 5)), "bias": jax.random.normal(k[3], (5,))},
    }


def test_polynomial_schedule_matches_zhu_gupta():
    s = polynomial_sparsity(0.8, begin_step=10, end_step=110, initial=0.1)
    for t, want in [(0, 0.1), (10, 0.1), (60, 0.8 + (0.1 - 0.8) * 0.5**3), (110, 0.8), (500, 0.8)]:
        assert float(s(t)) == pytest.approx(want, abs=1e-6)


@pytest.mark.parametrize("sparsity", [0.0, 0.37, 0.9])
def test_global_masks_prune_exactly_the_smallest_weights(sparsity):
    params = _random_params()
    masks = global_magnitude_masks(params, sparsity)
    kernels = np.concatenate(
        [np.abs(np.asarray(params[n]["kernel"])).ravel() for n in ("conv", "head")]
    )
    keep = np.concatenate([np.asarray(masks[n]["kernel"]).ravel() for n in ("conv", "head")])
    k = round(sparsity * kernels.size)
    assert (~keep).sum() == k
    assert np.array_equal(np.sort(kernels)[:k], np.sort(kernels[~keep]))  # numpy reference
    assert all(bool(masks[n]["bias"].all()) for n in ("conv", "head"))  # biases are never pruned


def test_masked_weights_stay_zero_through_training():
    run = toy.trained_run()
    pixels, labels, _ = toy.make_squares(128, seed=7)
    x, y = jnp.asarray(toy.normalize(pixels)), jnp.asarray(labels)
    tx = prune(optax.sgd(0.05, momentum=0.9), polynomial_sparsity(0.6, end_step=20), update_every=5)
    params = run.variables["params"]
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        grads = jax.grad(
            lambda p: optax.softmax_cross_entropy_with_integer_labels(
                run.model.apply({"params": p}, x), y
            ).mean()
        )(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    zero_before = None
    for t in range(30):
        params, state = step(params, state)
        zero_now = jax.tree.map(lambda p: np.asarray(p) == 0, params)
        masks = jax.tree.map(np.asarray, state.masks)
        # every masked weight is exactly zero after the step
        assert all(
            not (p[~m]).any()
            for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(masks), strict=True)
        )
        if zero_before is not None:  # a pruned weight never comes back
            assert all(
                (now | ~before).all()
                for now, before in zip(
                    jax.tree.leaves(zero_now), jax.tree.leaves(zero_before), strict=True
                )
            )
        zero_before = zero_now
        if t == 9:
            assert 0.0 < sparsity_report(params)["sparsity"] < 0.6
    rep = sparsity_report(params)
    assert rep["zeros"] == round(0.6 * rep["prunable"])


def test_prune_finetune_reaches_target_and_keeps_accuracy():
    run = toy.trained_run()
    train = [{"image": b["image"], "label": b["label"]} for b in toy.batches(512, seed=11)]
    pruned, report = prune_finetune(
        run.model,
        run.variables,
        train,
        target_sparsity=0.8,
        steps=60,
        learning_rate=3e-3,
        update_every=5,
        eval_batches=toy.batches(256, seed=2),
    )
    sp = sparsity_report(pruned["params"])
    assert sp["zeros"] == round(0.8 * sp["prunable"]) and report["sparsity"] == sp["sparsity"]
    assert report["top1_before"] >= 0.95 and report["top1_after"] >= 0.9


def test_per_channel_int8_quantization_error_and_size():
    params = _random_params()
    q = quantize_params(params)
    assert q["conv"]["kernel"]["int8"].dtype == jnp.int8
    chex.assert_shape(q["conv"]["kernel"]["scale"], (8,))
    w = np.asarray(params["conv"]["kernel"])
    scale = np.abs(w).reshape(-1, 8).max(0) / 127  # numpy reference: per output channel
    np.testing.assert_allclose(q["conv"]["kernel"]["scale"], scale, rtol=1e-6)
    err = np.abs(np.asarray(dequantize(q)["conv"]["kernel"]) - w)
    assert (err <= scale / 2 + 1e-7).all()

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            x = nn.relu(nn.Dense(256)(x.reshape(x.shape[0], -1)))
            return nn.Dense(10, name="head")(x)

    model = MLP()
    x = jax.random.normal(jax.random.key(1), (32, 8, 8, 3))
    variables = model.init(jax.random.key(0), x)
    qvars, report = quantize_run(model, variables)
    assert report["size_bytes_after"] < report["size_bytes_before"] / 3.5
    assert stored_size(variables) == report["size_bytes_before"]
    ref = model.apply(variables, x)
    got = quantized_apply(model, qvars, x)
    assert float(jnp.abs(got - ref).max()) < 0.02 * float(jnp.abs(ref).max())


def test_quantized_toy_model_keeps_accuracy_with_int8_activations():
    run = toy.trained_run()
    evals = toy.batches(256, seed=3)
    qvars, report = quantize_run(
        run.model, run.variables, evals, calibration_batches=toy.batches(128, seed=4)
    )
    assert report["top1_before"] >= 0.95
    assert report["top1_int8_weights"] >= report["top1_before"] - 0.02
    assert report["top1_int8_weights_activations"] >= report["top1_before"] - 0.03
    assert set(report["activation_ranges"]) == {"conv1", "features", "head"}
    x = jnp.asarray(evals[0]["image"])
    ref = run.model.apply(run.variables, x)
    got = quantized_apply(run.model, qvars, x, activation_ranges=report["activation_ranges"])
    assert float(jnp.abs(got - ref).max()) < 0.05 * float(jnp.abs(ref).max())
