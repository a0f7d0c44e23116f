"""CoAtNet: exact timm parameter counts, the Transformer stages' attention over the whole map,
tiny forward, feature levels. Logit parity with timm: tests/convert/fixtures/coatnet_tiny.npz."""

import pytest
from flax import traverse_util

from jaxvision import models
from tests.models.family_checks import check_forward, check_levels, levels_of, param_count

# timm 1.0.31: sum(p.numel() for p in timm.create_model('coatnet_{0..3}_224').parameters())
# (coatnet_0 also in shared/reference/param_counts.json).
TIMM_COUNTS = {"coatnet_0": 25_036_820, "coatnet_1": 42_225_776, "coatnet_2": 74_684_744,
               "coatnet_3": 166_966_264}
TINY = dict(stem_width=8, embed_dims=(8, 16, 16, 32), depths=(1, 1, 2, 1), head_dim=8,
            drop_path_rate=0.5, image_size=32)


@pytest.mark.parametrize("name", sorted(TIMM_COUNTS))
def test_parameter_count_equals_timm(name):
    assert param_count(name) == TIMM_COUNTS[name]


def test_transformer_stages_attend_over_the_whole_map():
    shapes = traverse_util.flatten_dict(
        models.abstract_variables(models.create("coatnet_0"), (1, 224, 224, 3))["params"], sep="/")
    # Stage 3 works on 14x14 (27^2 relative offsets), stage 4 on 7x7; heads of 32 channels span
    # the stage's output width (384 / 32 = 12), also in the downsampling first block.
    assert shapes["stage3_block1/attn/relative_position_bias_table"].shape == (27 * 27, 12)
    assert shapes["stage3_block1/attn/qkv/kernel"].shape == (192, 3 * 384)
    assert shapes["stage4_block2/attn/relative_position_bias_table"].shape == (13 * 13, 24)
    assert "stage1_block1/se/reduce/kernel" in shapes  # stages 1-2 are MBConv
    with pytest.raises(ValueError, match="image_size=256"):
        models.abstract_variables(models.create("coatnet_0"), (1, 256, 256, 3))


def test_tiny_forward_and_stochastic_depth():
    check_forward(models.create("coatnet_0", num_classes=10, **TINY), 32, 10, has_batch_stats=True)


def test_feature_levels():
    # timm coatnet_0_224.feature_info: the stem, then every stage.
    assert levels_of("coatnet_0") == [(2, 64), (4, 96), (8, 192), (16, 384), (32, 768)]
    check_levels("coatnet_0", TINY, 32, [(2, 8), (4, 8), (8, 16), (16, 16), (32, 32)])


# timm 1.0.31 coatnet_0_224(img_size=s) on a zero batch: runs at these sides, fails at the others
# with a shape mismatch (the MBConv shortcut pools with floor, the strided conv rounds up).
TIMM_RUNS = {63: True, 95: True, 96: True, 128: True, 160: True, 191: True, 192: True, 223: True,
             256: True, 40: False, 72: False, 97: False, 100: False, 104: False, 225: False}


def test_accepted_sides_are_those_timm_runs_at():
    from jaxvision.models.coatnet import accepts_side
    assert {s: accepts_side(s) for s in TIMM_RUNS} == TIMM_RUNS


@pytest.mark.parametrize("side", [97, 100])
def test_odd_size_is_refused_with_sizes_that_then_work(side):
    import re
    for make in (lambda: models.create("coatnet_0", **{**TINY, "image_size": side}),
                 lambda: models.abstract_variables(models.create("coatnet_0", **TINY),
                                                   (1, side, side, 3))):
        with pytest.raises(ValueError, match=r"cannot take \d+x\d+ inputs") as e:
            make()
        assert f"image_size={side}" not in str(e.value)
        suggested = [int(s) for s in re.findall(r"(\d+)(?: or |$)", str(e.value))]
        assert suggested == [95, 96]
        for s in suggested:
            shapes = models.abstract_variables(
                models.create("coatnet_0", **{**TINY, "image_size": s}), (1, s, s, 3))
            assert shapes["params"]["stage4_block1"]["attn"]["relative_position_bias_table"].shape[0] == 5 * 5
