"""Pipelines on tfds.testing.mock_data cifar10 / imagenet2012: shapes, exact evaluation,
determinism, exact resume, multi-process shards."""

import chex
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxvision import data


def _cfg(name="cifar10", **kw):
    c = data.default_config()
    c.name = name
    for k, v in kw.items():
        c[k] = v
    return c


def _take(pipe, n):
    it = iter(pipe)
    return [next(it) for _ in range(n)]


@pytest.fixture(scope="module")
def mock37():
    with tfds.testing.mock_data(num_examples=37):
        yield


def test_cifar10_train_batches_shapes_dtypes_ranges(mock37):
    pipe = data.build(
        _cfg(), "train", global_batch_size=8, train=True, process_count=1, process_index=0
    )
    assert pipe.info.image_shape == (32, 32, 3)
    assert pipe.info.num_classes == 10 and len(pipe.info.class_names) == 10
    assert pipe.info.num_examples == 37
    for b in _take(pipe, 6):  # crosses an epoch boundary (37 examples)
        chex.assert_shape(b["image"], (8, 32, 32, 3))
        chex.assert_type([b["image"], b["label"]], [np.float32, np.int32])
        assert b["mask"].dtype == bool and b["mask"].all()
        assert ((b["label"] >= 0) & (b["label"] < 10)).all()
        # normalized with the cifar10 constants: pixel range [0,1] maps into [-m/s, (1-m)/s]
        mean, std = np.array(pipe.info.mean), np.array(pipe.info.std)
        assert (b["image"] >= (0 - mean) / std - 1e-5).all()
        assert (b["image"] <= (1 - mean) / std + 1e-5).all()


def test_eval_counts_every_example_once_against_raw_tfds(mock37):
    cfg = _cfg(mean="none", std="none")
    pipe = data.build(
        cfg, "test", global_batch_size=16, train=False, process_count=1, process_index=0
    )
    assert len(pipe) == 3  # ceil(37 / 16)
    batches = list(pipe)
    assert len(batches) == 3
    mask = np.concatenate([b["mask"] for b in batches])
    assert mask.sum() == 37 and not mask[37:].any()
    images = np.concatenate([b["image"] for b in batches])[mask]
    labels = np.concatenate([b["label"] for b in batches])[mask]
    ref = list(tfds.builder("cifar10").as_dataset(split="test", shuffle_files=False))
    np.testing.assert_array_equal(labels, [int(r["label"]) for r in ref])
    ref_images = np.stack([r["image"].numpy() for r in ref]).astype(np.float32) / 255.0
    chex.assert_trees_all_close(images, ref_images, atol=1e-5)


def test_same_seed_same_order_other_seed_other_order(mock37):
    cfg = _cfg(flip=False, train_crop="resize")

    def labels(seed):
        pipe = data.build(
            cfg,
            "train",
            global_batch_size=8,
            train=True,
            seed=seed,
            process_count=1,
            process_index=0,
        )
        return np.concatenate([b["label"] for b in _take(pipe, 4)])

    a, b, c = labels(0), labels(0), labels(1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_resume_from_start_step_equals_uninterrupted(mock37):
    cfg = _cfg(rotation=15.0, color_jitter=0.4, train_crop="random_pad")
    kw = dict(global_batch_size=8, train=True, seed=3, process_count=1, process_index=0)
    full = _take(data.build(cfg, "train", **kw), 7)
    # augmentation is on: two different positions of the same example differ
    assert not np.array_equal(full[0]["image"], full[5]["image"])
    resumed = _take(data.build(cfg, "train", start_step=5, **kw), 2)  # 5*8 > 37: epoch 2
    for want, got in zip(full[5:], resumed, strict=True):
        np.testing.assert_array_equal(got["label"], want["label"])
        np.testing.assert_array_equal(got["image"], want["image"])


def test_two_process_shards_are_disjoint_and_cover(mock37):
    cfg = _cfg(mean="none", std="none")
    seen = []
    for p in range(2):
        pipe = data.build(
            cfg, "test", global_batch_size=8, train=False, process_index=p, process_count=2
        )
        assert len(pipe) == 5  # ceil(ceil(37/2)/4), the same on both processes
        assert pipe.info.local_batch_size == 4
        for b in pipe:
            seen += [x.tobytes() for x in b["image"][b["mask"]]]
    ref = [
        (r["image"].numpy().astype(np.float32) / 255.0).tobytes()
        for r in tfds.builder("cifar10").as_dataset(split="test", shuffle_files=False)
    ]
    assert len(seen) == 37 and sorted(seen) == sorted(ref)


def test_batch_not_divisible_by_processes_is_a_clear_error(mock37):
    with pytest.raises(ValueError, match="multiple of the process count 3"):
        data.build(
            _cfg(), "train", global_batch_size=8, train=True, process_index=0, process_count=3
        )


def test_imagenet_train_and_eval_shapes():
    with tfds.testing.mock_data(num_examples=10):
        cfg = _cfg("imagenet2012", color_jitter=0.4)
        train = data.build(
            cfg, "train", global_batch_size=4, train=True, process_index=0, process_count=1
        )
        b = next(iter(train))
        chex.assert_shape(b["image"], (4, 224, 224, 3))
        assert np.isfinite(b["image"]).all()
        assert train.info.num_classes == 1000
        ev = data.build(
            cfg, "auto", global_batch_size=4, train=False, process_index=0, process_count=1
        )
        assert ev.info.split == "validation" and len(ev) == 3
        masks = [b["mask"] for b in ev]
        assert sum(m.sum() for m in masks) == 10
        chex.assert_shape(next(iter(ev))["image"], (4, 224, 224, 3))


def test_unknown_dataset_message_lists_bundled_and_folder_usage():
    with pytest.raises(data.DataError) as e:
        data.build(
            _cfg("no_such_dataset_xyz"),
            "train",
            global_batch_size=2,
            train=True,
            process_index=0,
            process_count=1,
        )
    msg = str(e.value)
    assert "no_such_dataset_xyz" in msg and "mnist5k" in msg and "lfw_faces" in msg
    assert "image_folder" in msg and "config.data.path" in msg
