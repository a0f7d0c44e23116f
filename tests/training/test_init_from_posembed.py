"""init_from into a ViT at another resolution interpolates the position embedding."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.layers import patch
from jaxvision.training import checkpoints


def test_merge_pretrained_interpolates_position_embedding():
    rng = np.random.default_rng(0)
    pre = {"pos_embed": {"embedding": rng.normal(size=(1, 1 + 4 * 4, 8)).astype(np.float32)},
           "head": {"kernel": np.ones((8, 10), np.float32)}}
    init = {"pos_embed": {"embedding": jnp.zeros((1, 1 + 6 * 6, 8))},
            "head": {"kernel": jnp.zeros((8, 3))}}
    merged, reinit = checkpoints.merge_pretrained(init, pre)
    expected = patch.resize_position_embedding(jnp.asarray(pre["pos_embed"]["embedding"]), (6, 6),
                                               num_prefix_tokens=1)
    np.testing.assert_allclose(merged["pos_embed"]["embedding"], np.reshape(expected, (1, 37, 8)),
                               atol=1e-6)
    # the class token row is carried over unchanged; the new head is listed as re-initialized
    np.testing.assert_allclose(merged["pos_embed"]["embedding"][0, 0],
                               pre["pos_embed"]["embedding"][0, 0])
    assert reinit == ["head/kernel: shape (8, 10) -> (8, 3)"]
    assert jax.tree.structure(merged) == jax.tree.structure(init)
