import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import softmax
from skimage.filters import gaussian as sk_gaussian

from jaxvision.robustness import (
    Normalization,
    corrupt,
    evaluate_robustness,
    fgsm,
    format_table,
    normalization_from_config,
    pgd,
)
from tests.robustness import toy

NORM = Normalization(toy.MEAN, toy.STD)


def _logits_fn(run):
    return lambda x: run.model.apply(run.variables, x, train=False)


def test_fgsm_matches_hand_computed_gradient_of_linear_model():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(12, 3)).astype(np.float32)
    pixels = rng.uniform(0, 1, size=(5, 2, 2, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1], np.int32)
    norm = Normalization((0.4, 0.5, 0.6), (0.2, 0.3, 0.25))
    mean, std = np.array(norm.mean), np.array(norm.std)
    x = (pixels - mean) / std

    def logits_fn(z):
        return z.reshape(z.shape[0], -1) @ w

    # d CE / d pixels = (d CE / d x) / std, d CE / d x = W (softmax - onehot)
    p = softmax(x.reshape(5, -1) @ w, axis=-1)
    p[np.arange(5), labels] -= 1
    grad_pix = (p @ w.T).reshape(x.shape) / std
    eps = 0.05
    want = np.clip(pixels + eps * np.sign(grad_pix), 0, 1)
    got = fgsm(logits_fn, jnp.asarray(x), jnp.asarray(labels), eps=eps, normalization=norm)
    chex.assert_trees_all_close(np.asarray(got) * std + mean, want, atol=1e-5)
    # L2 FGSM moves each example by exactly eps (before clipping) along the gradient.
    got2 = fgsm(
        logits_fn, jnp.asarray(x), jnp.asarray(labels), eps=eps, norm="l2", normalization=norm
    )
    g = grad_pix / np.linalg.norm(grad_pix.reshape(5, -1), axis=1).reshape(5, 1, 1, 1)
    chex.assert_trees_all_close(
        np.asarray(got2) * std + mean, np.clip(pixels + eps * g, 0, 1), atol=1e-5
    )


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 0.8)])
def test_pgd_stays_in_eps_ball_and_pixel_range(norm, eps):
    run = toy.trained_run()
    batch = toy.batches(64)[0]
    x, y = jnp.asarray(batch["image"]), jnp.asarray(batch["label"])
    adv = pgd(
        _logits_fn(run),
        x,
        y,
        eps=eps,
        steps=5,
        norm=norm,
        rng=jax.random.key(0),
        normalization=NORM,
    )
    chex.assert_shape(adv, x.shape)
    delta = (np.asarray(adv) - np.asarray(x)) * toy.STD
    pix = np.asarray(adv) * toy.STD + toy.MEAN
    assert pix.min() >= -1e-6 and pix.max() <= 1 + 1e-6
    if norm == "linf":
        assert np.abs(delta).max() <= eps + 1e-5
    else:
        assert np.linalg.norm(delta.reshape(64, -1), axis=1).max() <= eps + 1e-4


def test_pgd_with_eps_zero_is_clean():
    run = toy.trained_run()
    batch = toy.batches(64)[0]
    x, y = jnp.asarray(batch["image"]), jnp.asarray(batch["label"])
    for norm in ("linf", "l2"):
        adv = pgd(
            _logits_fn(run),
            x,
            y,
            eps=0.0,
            steps=3,
            norm=norm,
            rng=jax.random.key(1),
            normalization=NORM,
        )
        chex.assert_trees_all_close(adv, x, atol=1e-6)
    res = evaluate_robustness(run, toy.batches(128), attack="pgd", eps=0.0, steps=3, corruptions=())
    assert res["pgd_top1"] == res["fgsm_top1"] == res["clean_top1"]


def test_attack_accuracies_are_ordered_and_corruptions_reported():
    run = toy.trained_run()
    res = evaluate_robustness(
        run,
        toy.batches(200),  # 200 = 3 full batches + a padded one: padding must not count
        attack="pgd",
        eps=0.2,
        steps=10,
        corruptions=("gaussian_noise", "contrast"),
        severities=(1, 5),
    )
    assert res["num_examples"] == 200
    assert res["clean_top1"] >= 0.95  # the toy task is learnt
    assert res["pgd_top1"] <= res["fgsm_top1"] <= res["clean_top1"]
    assert res["pgd_top1"] < res["fgsm_top1"] < res["clean_top1"]  # each attack bites
    assert set(res["corruptions"]) == {"gaussian_noise", "contrast"}
    assert set(res["corruptions"]["contrast"]) == {"1", "5", "mean"}
    assert "| pgd |" in format_table(res)


def test_corruptions_against_references_and_severity_order():
    pixels, _, _ = toy.make_squares(8, seed=3)
    pixels = np.repeat(pixels, 3, axis=-1)
    blurred = corrupt("gaussian_blur", pixels, 5)
    want = np.stack([sk_gaussian(p, sigma=1.0, mode="nearest", channel_axis=-1) for p in pixels])
    chex.assert_trees_all_close(blurred, want, atol=1e-5)
    noisy = corrupt("gaussian_noise", np.full((4, 32, 32, 3), 0.5, np.float32), 3, seed=0)
    assert abs(noisy.std() - 0.08) < 0.005 and abs(noisy.mean() - 0.5) < 0.005
    for name in ("gaussian_noise", "gaussian_blur", "contrast", "jpeg"):
        errors = [np.abs(corrupt(name, pixels, s) - pixels).mean() for s in (1, 3, 5)]
        assert errors[0] < errors[1] < errors[2], (name, errors)
        out = corrupt(name, pixels, 2)
        chex.assert_shape(out, pixels.shape)
        assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="severity"):
        corrupt("contrast", pixels, 6)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt("fog", pixels, 1)


def test_normalization_from_config():
    n = normalization_from_config({"normalization": "imagenet"})
    assert n.mean == (0.485, 0.456, 0.406)
    n = normalization_from_config({"mean": [0.1], "std": [0.3]})
    assert n.mean == (0.1,) and n.std == (0.3,)
    n = normalization_from_config(
        {"normalization": {"mean": [0.2, 0.2, 0.2], "std": [0.5, 0.5, 0.5]}}
    )
    assert n.std == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="unknown data normalization"):
        normalization_from_config({"normalization": "weird"})
    with pytest.raises(ValueError, match="eps"):
        fgsm(lambda x: x, jnp.zeros((1, 2)), jnp.zeros((1,), jnp.int32), eps=-1.0)
