"""MaxViT: exact torchvision / timm parameter counts, the two layouts' differences, tiny forward
in both layouts, feature levels, the partition-size error. Logit parity:
tests/convert/fixtures/{maxvit_tiny,maxvit_tf_tiny}.npz."""

import pytest
from flax import traverse_util

from jaxvision import models
from tests.models.family_checks import check_forward, check_levels, levels_of, param_count

# torchvision 0.29.1 maxvit_t and timm 1.0.31 maxvit_{tiny,small,base}_tf_224:
# sum(p.numel() for p in model.parameters()) (maxvit_t also in shared/reference/param_counts.json).
REFERENCE_COUNTS = {"maxvit_t": 30_919_624, "maxvit_tiny_tf_224": 30_916_528,
                    "maxvit_small_tf_224": 68_927_956, "maxvit_base_tf_224": 119_467_708}
TINY = dict(stem_width=8, embed_dims=(8, 16), depths=(1, 1), head_dim=4, partition_size=2,
            drop_path_rate=0.5)


@pytest.mark.parametrize("name", sorted(REFERENCE_COUNTS))
def test_parameter_count_equals_reference(name):
    assert param_count(name) == REFERENCE_COUNTS[name]


def test_layouts_differ_where_the_references_do():
    # torchvision: a 1x1 shortcut conv even when only the stride changes (64 -> 64), no stem conv1
    # bias, no classifier bias: 64*64+64 - 64 - 1000 = 3,096 more parameters than timm's port.
    def flat(name):
        v = models.abstract_variables(models.create(name), (1, 224, 224, 3))["params"]
        return traverse_util.flatten_dict(v, sep="/")

    tv, tf = flat("maxvit_t"), flat("maxvit_tiny_tf_224")
    assert "stage1_block1_mbconv/shortcut/kernel" in tv and "stage1_block1_mbconv/shortcut/kernel" not in tf
    assert "stem/conv1/bias" in tf and "stem/conv1/bias" not in tv
    assert "head/head/bias" in tf and "head/head/bias" not in tv
    assert REFERENCE_COUNTS["maxvit_t"] - REFERENCE_COUNTS["maxvit_tiny_tf_224"] == 64 * 64 + 64 - 64 - 1000


@pytest.mark.parametrize("layout", ["torchvision", "tf"])
def test_tiny_forward_and_stochastic_depth(layout):
    model = models.create("maxvit_t", num_classes=10, layout=layout, **TINY)
    check_forward(model, 16, 10, has_batch_stats=True)  # maps 8 -> 4 -> 2: windows and grids of 2x2


def test_feature_levels():
    # timm maxvit_tiny_tf_224.feature_info: the stem, then every stage.
    assert levels_of("maxvit_t") == [(2, 64), (4, 64), (8, 128), (16, 256), (32, 512)]
    check_levels("maxvit_t", TINY, 16, [(2, 8), (4, 8), (8, 16)])


# timm 1.0.31 maxvit_tiny_tf_224(img_size=s) (window = s // 32) on a zero batch: runs at these
# sides, fails at the others ("height must be divisible by window").
TIMM_RUNS = {40: True, 63: True, 96: True, 128: True, 160: True, 192: True, 256: True, 72: False,
             95: False, 97: False, 100: False, 104: False, 191: False, 223: False, 225: False}


def test_accepted_sides_are_those_timm_runs_at():
    from jaxvision.models.maxvit import accepts_side
    assert {s: accepts_side(s, max(1, s // 32)) for s in TIMM_RUNS} == TIMM_RUNS


def test_refused_size_suggests_sizes_that_then_work():
    import re
    model = models.create("maxvit_t", **TINY)  # two stages, 2x2 partitions
    with pytest.raises(ValueError, match=r"cannot take 24x24 inputs.*2x2 windows") as e:
        models.abstract_variables(model, (1, 24, 24, 3))  # stage maps 6 and 3
    suggested = [int(s) for s in re.findall(r"(\d+)(?: or |$)", str(e.value))]
    assert suggested == [29, 30]  # the nearest sides with even maps in both stages (8 and 4)
    for s in suggested:
        models.abstract_variables(model, (1, s, s, 3))
