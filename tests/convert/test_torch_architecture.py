"""Converters of Swin, EfficientNetV2, MaxViT and CoAtNet read the architecture from the state
dict: converting a parity fixture *without* its overrides must find exactly the tiny reference
architecture the fixture was built with (and ``convert`` checks every shape against the model)."""

import os

import pytest

from jaxvision.convert import convert
from tests.convert.test_parity_fixtures import load_fixture

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
INFERRED = ["swin", "efficientnet_v2", "tf_efficientnetv2_timm", "maxvit", "maxvit_tf_timm", "coatnet_timm"]


def _same(a, b) -> bool:
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


@pytest.mark.parametrize("name", INFERRED)
def test_architecture_read_from_the_state_dict(name):
    state, _, _, meta = load_fixture(os.path.join(FIXTURES, f"{name}.npz"))
    converted = convert("torch", state, meta["model"])
    for key, want in meta["overrides"].items():
        assert _same(converted.model_overrides[key], want), (key, converted.model_overrides[key], want)
    assert converted.num_classes == meta["num_classes"]
    side = meta["overrides"].get("image_size", converted.image_shape[0])
    assert converted.image_shape == (side, side, 3)
    if name == "tf_efficientnetv2_timm":  # timm's TF port: 'SAME' padding, BatchNorm eps 1e-3
        assert converted.model_overrides["padding"] == "SAME"
        assert converted.model_overrides["bn_epsilon"] == 1e-3


@pytest.mark.parametrize("name,wrong", [("swin", "maxvit_t"), ("maxvit", "coatnet_0"),
                                        ("coatnet_timm", "swin_t")])
def test_another_family_is_refused(name, wrong):
    state, _, _, _ = load_fixture(os.path.join(FIXTURES, f"{name}.npz"))
    with pytest.raises(ValueError, match="state dict has"):
        convert("torch", state, wrong)
