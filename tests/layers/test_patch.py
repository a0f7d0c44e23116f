"""Patch embedding, class token / pooling, position embeddings and their interpolation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision.layers.patch import (
    ClassToken,
    PatchEmbed,
    PositionEmbedding,
    pool_tokens,
    resize_pos_embedding_params,
    resize_position_embedding,
    sincos_2d_position_embedding,
)


def test_patch_embed_equals_numpy_patches():
    x = np.random.default_rng(0).normal(size=(2, 12, 8, 3)).astype(np.float32)
    module = PatchEmbed(patch_size=4, hidden_size=5)
    variables = module.init(jax.random.key(0), x)
    tokens, grid = module.apply(variables, x)
    assert grid == (3, 2)
    chex.assert_shape(tokens, (2, 6, 5))
    kernel = np.asarray(variables["params"]["proj"]["kernel"])  # (4, 4, 3, 5)
    bias = np.asarray(variables["params"]["proj"]["bias"])
    for i in range(3):  # tokens are row-major over the patch grid
        for j in range(2):
            patch = x[:, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4, :]
            expected = np.einsum("nhwc,hwcd->nd", patch, kernel) + bias
            chex.assert_trees_all_close(tokens[:, i * 2 + j], expected, atol=1e-5)


def test_patch_embed_rejects_indivisible_input():
    with pytest.raises(ValueError, match="not divisible into 16x16 patches"):
        PatchEmbed(16, 8).init(jax.random.key(0), np.ones((1, 30, 32, 3)))


def test_class_token_and_pooling():
    x = np.random.default_rng(1).normal(size=(2, 4, 6)).astype(np.float32)
    module = ClassToken()
    variables = module.init(jax.random.key(0), x)
    chex.assert_shape(variables["params"]["cls"], (1, 1, 6))
    variables = {"params": {"cls": jnp.arange(6.0).reshape(1, 1, 6)}}
    y = module.apply(variables, x)
    chex.assert_shape(y, (2, 5, 6))
    chex.assert_trees_all_close(pool_tokens(y, "token"), np.tile(np.arange(6.0), (2, 1)))
    chex.assert_trees_all_close(pool_tokens(y, "gap", 1), x.mean(1), atol=1e-6)
    chex.assert_trees_all_close(pool_tokens(x, "gap", 0), x.mean(1), atol=1e-6)
    with pytest.raises(ValueError, match="unknown pool"):
        pool_tokens(y, "max")


def test_sincos_2d_matches_definition():
    h, w, dim = 3, 4, 16
    emb = sincos_2d_position_embedding((h, w), dim)
    chex.assert_shape(emb, (h * w, dim))
    omega = 1.0 / 10000 ** (np.arange(4) / 4)
    for r in range(h):
        for c in range(w):
            row = emb[r * w + c]
            np.testing.assert_allclose(row[0:4], np.sin(c * omega), atol=1e-6)
            np.testing.assert_allclose(row[4:8], np.cos(c * omega), atol=1e-6)
            np.testing.assert_allclose(row[8:12], np.sin(r * omega), atol=1e-6)
            np.testing.assert_allclose(row[12:16], np.cos(r * omega), atol=1e-6)
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d_position_embedding((2, 2), 6)


def np_bilinear_1d(n_in, n_out):
    """Interpolation matrix (n_out, n_in), half-pixel centres, edges clamped (TF2 / PyTorch
    align_corners=False)."""
    src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] += 1 - (src - lo)
    m[np.arange(n_out), hi] += src - lo
    return m


def test_resize_position_embedding_equals_numpy_bilinear():
    rng = np.random.default_rng(2)
    posemb = rng.normal(size=(1, 1 + 4 * 4, 8)).astype(np.float32)
    out = resize_position_embedding(posemb, (6, 7), num_prefix_tokens=1, method="bilinear")
    chex.assert_shape(out, (1, 1 + 6 * 7, 8))
    np.testing.assert_array_equal(out[:, 0], posemb[:, 0])  # class token untouched
    grid = posemb[:, 1:].reshape(1, 4, 4, 8)
    expected = np.einsum("ai,bj,nijc->nabc", np_bilinear_1d(4, 6), np_bilinear_1d(4, 7), grid)
    chex.assert_trees_all_close(out[:, 1:].reshape(1, 6, 7, 8), expected, atol=1e-5)
    # Same grid: unchanged.
    chex.assert_trees_all_equal(resize_position_embedding(posemb, 4, num_prefix_tokens=1), posemb)


@pytest.mark.parametrize("new_grid", [(6, 6), (2, 3)])
def test_bicubic_resize_keeps_constants_and_row_order(new_grid):
    # Constant channels stay constant; a channel that only depends on the row stays so (the
    # grid is rearranged row-major in and out).
    rows = np.repeat(np.arange(4.0), 4)
    posemb = np.stack([np.full(16, 3.0), rows], axis=-1)[None].astype(np.float32)
    out = np.asarray(resize_position_embedding(posemb, new_grid, num_prefix_tokens=0))
    h, w = new_grid
    chex.assert_shape(out, (1, h * w, 2))
    np.testing.assert_allclose(out[0, :, 0], 3.0, atol=1e-5)
    by_row = out[0, :, 1].reshape(h, w)
    np.testing.assert_allclose(by_row, np.repeat(by_row[:, :1], w, axis=1), atol=1e-5)
    assert np.all(np.diff(by_row[:, 0]) > 0)


def test_learned_embedding_shape_follows_stored_grid_not_input():
    x = np.zeros((1, 1 + 2 * 3, 4), np.float32)
    module = PositionEmbedding(grid_size=(4, 4), num_prefix_tokens=1)
    variables = module.init(jax.random.key(0), x, (2, 3))
    chex.assert_shape(variables["params"]["embedding"], (1, 17, 4))
    out = module.apply(variables, x, (2, 3))
    expected = resize_position_embedding(
        variables["params"]["embedding"], (2, 3), num_prefix_tokens=1
    )
    chex.assert_trees_all_close(out, expected, atol=1e-6)
    with pytest.raises(ValueError, match="do not match"):
        module.apply(variables, x, (3, 3))


def test_sincos_embedding_has_no_params_and_skips_class_token():
    x = np.zeros((2, 1 + 9, 8), np.float32)
    module = PositionEmbedding(kind="sincos2d", num_prefix_tokens=1)
    variables = module.init(jax.random.key(0), x, (3, 3))
    assert not jax.tree.leaves(variables)
    out = module.apply(variables, x, (3, 3))
    np.testing.assert_array_equal(out[:, 0], 0.0)
    chex.assert_trees_all_close(out[0, 1:], sincos_2d_position_embedding(3, 8))


def test_resize_params_equals_apply_time_interpolation():
    # A module made for a 2x2 grid applied to a 3x3 grid interpolates at apply time; resizing the
    # stored parameter once to 3x3 gives the same embeddings with a 3x3 module.
    x = np.zeros((1, 1 + 9, 4), np.float32)
    small = PositionEmbedding(grid_size=(2, 2))
    variables = small.init(jax.random.key(0), x, (3, 3))
    params = {"pos_embed": dict(variables["params"]), "other": {"w": np.ones(2)}}
    resized = resize_pos_embedding_params(params, (3, 3))
    chex.assert_shape(resized["pos_embed"]["embedding"], (1, 10, 4))
    np.testing.assert_array_equal(resized["other"]["w"], params["other"]["w"])
    big = PositionEmbedding(grid_size=(3, 3))
    chex.assert_trees_all_close(
        big.apply({"params": resized["pos_embed"]}, x, (3, 3)),
        small.apply(variables, x, (3, 3)),
        atol=1e-6,
    )
