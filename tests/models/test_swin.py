"""Swin Transformer v1: exact torchvision parameter counts, relative position index and
shifted-window mask against brute force, tiny forward, feature levels. Logit parity with
torchvision: tests/convert/fixtures/swin_tiny.npz."""

import itertools

import numpy as np
import pytest

from jaxvision import models
from jaxvision.layers import relative_position_index, window_merge, window_partition
from jaxvision.models.swin import shifted_window_mask
from tests.models.family_checks import check_forward, check_levels, levels_of, param_count

# torchvision 0.29.1: sum(p.numel() for p in torchvision.models.swin_{t,s,b}().parameters())
# (swin_t also in shared/reference/param_counts.json; torchvision's weight metadata says the same).
TORCHVISION_COUNTS = {"swin_t": 28_288_354, "swin_s": 49_606_258, "swin_b": 87_768_224}
TINY = dict(embed_dim=8, depths=(2, 2), num_heads=(1, 2), window_size=3)


@pytest.mark.parametrize("name", sorted(TORCHVISION_COUNTS))
def test_parameter_count_equals_torchvision(name):
    assert param_count(name) == TORCHVISION_COUNTS[name]


def test_relative_position_index_brute_force():
    h, w = 3, 4
    cells = list(itertools.product(range(h), range(w)))
    want = np.array([[(yi - yj + h - 1) * (2 * w - 1) + (xi - xj + w - 1) for yj, xj in cells]
                     for yi, xi in cells])
    np.testing.assert_array_equal(relative_position_index(h, w), want)
    assert want.max() == (2 * h - 1) * (2 * w - 1) - 1


@pytest.mark.parametrize("height,width", [(9, 9), (6, 9)])
def test_shifted_window_mask_blocks_exactly_the_wrapped_pairs(height, width):
    # After rolling by -shift, two tokens of one window may attend to each other iff neither axis
    # wrapped between them: their original coordinates differ by the same amount as the rolled.
    window, shift = (3, 3), (1, 1)
    mask = shifted_window_mask(height, width, window, shift)[:, 0]
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    coords = np.stack([rows, cols], -1)[None].astype(np.float32)
    tokens = window_partition(coords, window)[0]  # (windows, 9, 2) rolled coordinates
    for win, m in zip(tokens, mask, strict=True):
        orig = (win + np.array(shift)) % np.array([height, width])
        contiguous = np.all((orig[:, None] - orig[None]) == (win[:, None] - win[None]), axis=-1)
        np.testing.assert_array_equal(m == 0, contiguous)
    assert set(np.unique(mask)) <= {0.0, -100.0}
    np.testing.assert_array_equal(window_merge(window_partition(coords, window), window, height, width), coords)


def test_tiny_forward_and_stochastic_depth():
    model = models.create("swin_t", num_classes=10, drop_path_rate=0.5, **TINY)
    check_forward(model, 24, 10, has_batch_stats=False)  # 6x6 map: padded to the window, shifted


def test_feature_levels():
    # timm swin_tiny_patch4_window7_224.feature_info (reduction, num_chs).
    assert levels_of("swin_t") == [(4, 96), (8, 192), (16, 384), (32, 768)]
    check_levels("swin_t", TINY, 24, [(4, 8), (8, 16)])
    assert models.list_models("swin") == ["swin_b", "swin_s", "swin_t"]
