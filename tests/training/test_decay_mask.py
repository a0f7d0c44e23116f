"""Weight decay skips biases and norm parameters found by name, not only by ndim."""

import numpy as np
from flax import traverse_util

from jaxvision.training.optimizers import decay_mask


def test_decay_mask_excludes_multi_dim_biases_and_scanned_norms():
    params = {
        "attn": {"query": {"kernel": np.zeros((8, 2, 4)), "bias": np.zeros((2, 4))}},
        "encoder": {"norm1": {"scale": np.zeros((3, 8)), "bias": np.zeros((3, 8))}},  # scanned
        "conv": {"kernel": np.zeros((3, 3, 1, 4))},
        "bn": {"scale": np.zeros((4,)), "bias": np.zeros((4,))},
        "pos_embed": {"embedding": np.zeros((1, 5, 8))},
    }
    mask = traverse_util.flatten_dict(decay_mask(params), sep="/")
    assert mask == {
        "attn/query/kernel": True, "attn/query/bias": False,
        "encoder/norm1/scale": False, "encoder/norm1/bias": False,
        "conv/kernel": True, "bn/scale": False, "bn/bias": False,
        "pos_embed/embedding": True,
    }
    everything = traverse_util.flatten_dict(decay_mask(params, decay_norms_and_biases=True), sep="/")
    assert all(everything.values())
    regex = traverse_util.flatten_dict(decay_mask(params, no_decay_regex="pos_embed"), sep="/")
    assert regex["pos_embed/embedding"] is False and regex["conv/kernel"] is True
