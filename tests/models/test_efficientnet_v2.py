"""EfficientNetV2: exact torchvision parameter counts, the fused/MBConv block structure, tiny
forward, feature levels. Logit parity with torchvision and timm's TF port:
tests/convert/fixtures/{efficientnet_v2_tiny,tf_efficientnetv2_tiny}.npz."""

import pytest
from flax import traverse_util

from jaxvision import models
from jaxvision.models.efficientnet import StageConfig
from tests.models.family_checks import check_forward, check_levels, levels_of, param_count

# torchvision 0.29.1: sum(p.numel() for p in torchvision.models.efficientnet_v2_{s,m,l}().parameters())
# (= its weight metadata; efficientnet_v2_s also in shared/reference/param_counts.json and equal
# to timm's tf_efficientnetv2_s).
TORCHVISION_COUNTS = {"efficientnet_v2_s": 21_458_488, "efficientnet_v2_m": 54_139_356,
                      "efficientnet_v2_l": 118_515_272}
TINY = dict(stem_features=8, head_features=16, stages=(
    StageConfig(1, 3, 1, 8, 2, se_ratio=0.0, fused=True), StageConfig(4, 3, 2, 16, 1, se_ratio=0.0, fused=True),
    StageConfig(4, 3, 2, 16, 2), StageConfig(6, 3, 2, 24, 1)))


@pytest.mark.parametrize("name", sorted(TORCHVISION_COUNTS))
def test_parameter_count_equals_torchvision(name):
    assert param_count(name) == TORCHVISION_COUNTS[name]


def test_fused_stages_have_no_depthwise_conv_or_se():
    model = models.create("efficientnet_v2_s")
    shapes = traverse_util.flatten_dict(
        models.abstract_variables(model, (1, 64, 64, 3))["params"], sep="/")
    # Stage 1: one 3x3 conv 24 -> 24 (expand ratio 1); stage 2: 3x3 conv 24 -> 96, 1x1 to 48.
    assert shapes["stage1_block1/fused/conv/kernel"].shape == (3, 3, 24, 24)
    assert shapes["stage2_block1/fused/conv/kernel"].shape == (3, 3, 24, 96)
    assert shapes["stage2_block1/project/conv/kernel"].shape == (1, 1, 96, 48)
    assert not any(k.startswith(("stage1", "stage2", "stage3")) and ("/dw/" in k or "/se/" in k) for k in shapes)
    # Stage 4 is MBConv: 64 -> 256 expand, depthwise, SE with 64 / 4 = 16 channels.
    assert shapes["stage4_block1/dw/conv/kernel"].shape == (3, 3, 1, 256)
    assert shapes["stage4_block1/se/reduce/kernel"].shape == (1, 1, 256, 16)


def test_tiny_forward_and_stochastic_depth():
    model = models.create("efficientnet_v2_s", num_classes=10, drop_path_rate=0.5, **TINY)
    check_forward(model, 32, 10, has_batch_stats=True)


def test_feature_levels():
    # timm tf_efficientnetv2_s.feature_info: the last block at each stride.
    assert levels_of("efficientnet_v2_s") == [(2, 24), (4, 48), (8, 64), (16, 160), (32, 256)]
    check_levels("efficientnet_v2_s", TINY, 32, [(2, 8), (4, 16), (8, 16), (16, 24)])
