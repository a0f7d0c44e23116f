import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import jaxvision.explain as gc
from jaxvision.explain.overlay import save_overlay
from jaxvision.explain.saliency import integrated_gradients, saliency_map, vanilla_gradients
from tests.robustness import toy


def _square_batch(n=16, seed=5):
    pixels, labels, corners = toy.make_squares(2 * n, seed=seed)
    keep = labels == 1  # only images with a square
    return pixels[keep][:n], corners[keep][:n]


def _on_square_fraction(heat, corners, margin=1):
    """How many heat maps have their maximum on (or within `margin` px of) the square."""
    hits = 0
    for h, (r, c) in zip(np.asarray(heat), corners, strict=True):
        i, j = np.unravel_index(np.argmax(h), h.shape)
        hits += (r - margin <= i < r + toy.SQUARE + margin) and (
            c - margin <= j < c + toy.SQUARE + margin
        )
    return hits / len(corners)


def test_default_layer_is_last_feature_map_and_unknown_layer_is_named():
    run = toy.trained_run()
    x = jnp.zeros((1, 16, 16, 1))
    assert gc.default_layer(run.model, run.variables, x) == "features"
    assert [n for n, _ in gc.feature_layers(run.model, run.variables, x)] == ["conv1", "features"]
    with pytest.raises(ValueError, match="no module named 'stage9'.*features"):
        gc.gradcam(run.model, run.variables, x, layer="stage9")


def test_layer_gradients_match_a_hand_split_model():
    """Activation and gradient from the interceptor equal those of the model split by hand."""
    run = toy.trained_run()
    p = run.variables["params"]
    pixels, _ = _square_batch(4)
    x = jnp.asarray(toy.normalize(pixels))
    act, grad, logits = gc.layer_gradients(
        run.model, run.variables, x, "features", target=jnp.ones(4, jnp.int32)
    )

    import flax.linen as nn

    def head(a):  # relu -> mean -> Dense, as in TinyCNN after the 'features' conv
        return nn.Dense(2).apply({"params": p["head"]}, jax.nn.relu(a).mean(axis=(1, 2)))

    want_act = nn.Conv(16, (3, 3)).apply(
        {"params": p["features"]}, jax.nn.relu(nn.Conv(8, (3, 3)).apply({"params": p["conv1"]}, x))
    )
    want_grad = jax.grad(lambda a: head(a)[:, 1].sum())(want_act)
    chex.assert_trees_all_close(act, want_act, atol=1e-5)
    chex.assert_trees_all_close(grad, want_grad, atol=1e-6)
    chex.assert_trees_all_close(logits, head(want_act), atol=1e-5)


def test_gradcam_peaks_on_the_bright_square(tmp_path):
    run = toy.trained_run()
    pixels, corners = _square_batch(16)
    cam, logits, layer = gc.gradcam(run.model, run.variables, toy.normalize(pixels))
    chex.assert_shape(cam, (16, 16, 16))
    assert layer == "features"
    assert (np.asarray(logits).argmax(-1) == 1).all()
    assert float(cam.min()) >= 0 and float(cam.max()) <= 1 + 1e-6
    assert _on_square_fraction(cam, corners) >= 0.9
    path = save_overlay(str(tmp_path / "cam.png"), pixels[0], cam[0], title="square")
    png = np.asarray(Image.open(path))
    assert png.ndim == 3 and png.shape[0] > 100 and os.path.getsize(path) > 1000


def test_saliency_and_integrated_gradients():
    run = toy.trained_run()

    def logits_fn(x):
        return run.model.apply(run.variables, x, train=False)

    pixels, corners = _square_batch(8)
    x = jnp.asarray(toy.normalize(pixels))
    g = vanilla_gradients(logits_fn, x, target=1)
    # Independent reference: central finite differences of the logit at one pixel.
    e = np.zeros(x.shape, np.float32)
    e[0, 5, 7, 0] = 1e-2
    fd = (logits_fn(x + e)[0, 1] - logits_fn(x - e)[0, 1]) / 2e-2
    np.testing.assert_allclose(g[0, 5, 7, 0], fd, rtol=2e-2, atol=1e-4)
    # Completeness: IG attributions add up to logit(x) - logit(baseline).
    baseline = jnp.full_like(x, (0.0 - toy.MEAN) / toy.STD)  # black image
    ig = integrated_gradients(logits_fn, x, target=1, baseline=baseline, steps=64)
    gap = logits_fn(x)[:, 1] - logits_fn(baseline)[:, 1]
    np.testing.assert_allclose(ig.sum(axis=(1, 2, 3)), gap, rtol=2e-2, atol=2e-2)
    heat = saliency_map(ig)
    chex.assert_shape(heat, (8, 16, 16))
    assert _on_square_fraction(heat, corners) >= 0.75
