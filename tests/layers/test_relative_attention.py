"""RelativePositionSelfAttention against a NumPy transcription of torchvision's Swin window
attention, its initialization, and the grid partition against explicit indexing."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.layers import (
    RelativePositionSelfAttention,
    grid_merge,
    grid_partition,
    relative_position_index,
)


def numpy_window_attention(x, qkv_w, qkv_b, proj_w, proj_b, table, heads, window, mask):
    """torchvision ``shifted_window_attention``'s core (after partitioning), in NumPy float64:
    qkv reshaped (3, heads, head_dim), q scaled by head_dim^-0.5, + bias table[index], + mask."""
    n, c = x.shape[-2:]
    hd = c // heads
    qkv = (x @ qkv_w + qkv_b).reshape(*x.shape[:-1], 3, heads, hd)
    q, k, v = (np.moveaxis(qkv[..., i, :, :], -2, -3) for i in range(3))  # (..., H, N, hd)
    logits = (q * hd**-0.5) @ np.swapaxes(k, -1, -2)
    bias = table[relative_position_index(*window).reshape(-1)].reshape(n, n, heads).transpose(2, 0, 1)
    logits = logits + bias + mask
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    y = np.moveaxis(p @ v, -3, -2).reshape(*x.shape[:-1], c)
    return y @ proj_w + proj_b


def test_matches_numpy_reference_with_mask():
    window, heads, c = (2, 3), 2, 8
    layer = RelativePositionSelfAttention(heads, window)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 6, c)).astype(np.float32)  # (batch, windows, tokens, C)
    mask = np.where(rng.random((4, 1, 6, 6)) < 0.3, -100.0, 0.0).astype(np.float32)
    variables = layer.init(jax.random.key(0), x, mask)
    p = jax.tree.map(np.asarray, variables["params"])
    p["relative_position_bias_table"] = rng.standard_normal(p["relative_position_bias_table"].shape).astype(np.float32)
    got = layer.apply({"params": p}, x, mask)
    want = numpy_window_attention(x.astype(np.float64), p["qkv"]["kernel"], p["qkv"]["bias"],
                                  p["proj"]["kernel"], p["proj"]["bias"],
                                  p["relative_position_bias_table"], heads, window, mask)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_initialization_is_the_references():
    # torchvision Swin/MaxViT, timm: trunc_normal_(std=0.02) (bounds +-2 absolute: N(0, 0.02))
    # tables and projections, zero biases.
    layer = RelativePositionSelfAttention(4, (7, 7))
    p = layer.init(jax.random.key(0), jnp.zeros((1, 49, 128)))["params"]
    for w in (p["relative_position_bias_table"], p["qkv"]["kernel"], p["proj"]["kernel"]):
        assert abs(float(jnp.std(w)) - 0.02) < 0.002 and abs(float(jnp.mean(w))) < 0.002
    assert p["relative_position_bias_table"].shape == (169, 4)
    assert not np.any(np.asarray(p["qkv"]["bias"])) and not np.any(np.asarray(p["proj"]["bias"]))


def test_grid_partition_indexing():
    h, w, g = 6, 4, 2
    x = np.arange(h * w).reshape(1, h, w, 1).astype(np.float32)
    groups = np.asarray(grid_partition(x, (g, g)))[0, :, :, 0]  # (h/g * w/g, g * g)
    for b in range(h // g):
        for d in range(w // g):
            want = [x[0, a * (h // g) + b, cc * (w // g) + d, 0] for a in range(g) for cc in range(g)]
            np.testing.assert_array_equal(groups[b * (w // g) + d], want)
    np.testing.assert_array_equal(grid_merge(grid_partition(x, (g, g)), (g, g), h, w), x)
