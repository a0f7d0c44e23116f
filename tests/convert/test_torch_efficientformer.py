"""timm EfficientFormer / MobileViTv2 state dicts that do not fit are refused with a message
naming the problem (parity itself: test_parity_fixtures.py)."""

import os

import numpy as np
import pytest

from jaxvision.convert import convert
from tests.convert.test_parity_fixtures import load_fixture

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def _fixture(name):
    return load_fixture(os.path.join(FIXTURES, f"{name}.npz"))


def test_a_foreign_attention_bias_index_is_refused():
    state, _, _, meta = _fixture("efficientformer_timm")
    key = next(k for k in state if k.endswith("attention_bias_idxs"))
    state[key] = np.zeros_like(state[key])
    with pytest.raises(ValueError, match="attention_bias_idxs is not timm's"):
        convert("torch", state, meta["model"], **meta["overrides"])


@pytest.mark.parametrize("fixture, model", [("efficientformer_timm", "mobilevitv2_050"),
                                            ("mobilevitv2_timm", "efficientformer_l1")])
def test_another_familys_state_dict_is_refused(fixture, model):
    state, _, _, _ = _fixture(fixture)
    with pytest.raises(ValueError, match="state dict has no"):
        convert("torch", state, model)
