"""Converted run directories record the evaluation crop of the source's reference evaluation:
timm's ``default_cfg['crop_pct']`` where a family's checkpoints were evaluated otherwise than
the usual 224/256 = 0.875 (timm 1.0.31: mobilevit 0.9, mobilevitv2 0.888, efficientformer
0.95)."""

import os

import pytest

from jaxvision.convert import convert
from jaxvision.convert.run_directory import preprocessing
from tests.convert.test_parity_fixtures import load_fixture

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.mark.parametrize("fixture, crop", [("efficientformer_timm", 0.95), ("convnext", 0.875)])
def test_eval_crop_is_the_references(fixture, crop):
    state, _, _, meta = load_fixture(os.path.join(FIXTURES, f"{fixture}.npz"))
    converted = convert("torch", state, meta["model"], **meta["overrides"])
    assert preprocessing(converted)["eval_crop_fraction"] == crop
