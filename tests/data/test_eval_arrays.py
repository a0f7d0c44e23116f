"""A bundled split read as NumPy arrays (evaluate without TensorFlow) gives the tf.data evaluation
pipeline's examples: the same model inputs bit for bit, the same labels, each example once."""

import os
import re
import zipfile

import numpy as np
import pytest

from jaxvision import data
from jaxvision.data import bundled_arrays, eval_arrays
from tests.data.helpers import data_config as _cfg


@pytest.fixture
def dataset_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXVISION_DATASET_CACHE", str(tmp_path / "datasets"))
    return tmp_path / "datasets"


def _rows(pipeline):
    """(images, labels) of the unmasked rows, in a canonical order (label, then pixel bytes)."""
    images, labels = [], []
    for batch in pipeline:
        images.append(batch["image"][batch["mask"]])
        labels.append(batch["label"][batch["mask"]])
    images, labels = np.concatenate(images), np.concatenate(labels)
    order = sorted(range(len(labels)), key=lambda i: (int(labels[i]), images[i].tobytes()))
    return images[order], labels[order]


@pytest.mark.parametrize("name,split,batch,kw", [
    ("mnist5k", "test", 96, {}),
    ("digits", "validation", 64, {"channels": 3, "image_size": 16, "eval_crop_fraction": 0.875}),
    ("lfw_faces", "auto", 7, {"mean": "none", "std": "none"}),
])
def test_numpy_split_equals_the_tf_data_pipeline(name, split, batch, kw, bundled_dir, no_network,
                                                 dataset_cache):
    cfg = _cfg(name, bundled_dir, **kw)
    fast = eval_arrays.build(cfg, split, global_batch_size=batch, process_count=1)
    slow = data.build(cfg, split, global_batch_size=batch, train=False, process_index=0,
                      process_count=1)
    assert fast is not None
    for key in ("num_classes", "class_names", "num_examples", "image_shape", "split",
                "local_batch_size", "num_local_examples", "mean", "std"):
        assert getattr(fast.info, key) == getattr(slow.info, key), key
    assert len(fast) == len(slow)
    shapes = {b["image"].shape for b in fast}
    assert shapes == {(batch, *slow.info.image_shape)}  # one batch shape: compiled once
    got, want = _rows(fast), _rows(slow)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])
    assert got[0].dtype == np.float32 and len(got[1]) == slow.info.num_examples
    again = _rows(fast)  # re-iterable: a second pass (robustness, calibration) sees the same
    np.testing.assert_array_equal(again[0], got[0])


def test_other_inputs_use_tf_data(tmp_path, dataset_cache):
    cfg = _cfg("mnist5k", None)
    assert eval_arrays.build(cfg, "test[:50%]", global_batch_size=8, process_count=1) is None
    assert eval_arrays.build(cfg, "test", global_batch_size=8, process_count=2) is None
    assert eval_arrays.build(_cfg("cifar10", None), "test", global_batch_size=8,
                             process_count=1) is None
    folder = _cfg("image_folder", None, path=str(tmp_path))
    assert eval_arrays.build(folder, "test", global_batch_size=8, process_count=1) is None


def test_damaged_cache_file_is_rebuilt_not_used(dataset_cache):
    images, labels = bundled_arrays.split_arrays("digits", "test")
    path = bundled_arrays.cache_path("digits")
    assert path.startswith(str(dataset_cache))
    full, _ = bundled_arrays.load("digits")
    parts = bundled_arrays.stratified_split(bundled_arrays.load("digits")[1],
                                            bundled_arrays.FRACTIONS["digits"])
    np.testing.assert_array_equal(images, full[parts["test"]])
    with zipfile.ZipFile(path) as z:  # a byte inside the test images' stored data
        inside = z.getinfo("test_images.npy").header_offset + 200
    size = len(open(path, "rb").read())

    def flip(blob):
        return blob[:inside] + bytes([blob[inside] ^ 0xFF]) + blob[inside + 1:]

    for damage in (lambda b: b[: size // 2], flip, lambda b: b""):
        blob = open(path, "rb").read()
        with open(path, "wb") as f:
            f.write(damage(blob))
        again, again_labels = bundled_arrays.split_arrays("digits", "test")
        np.testing.assert_array_equal(again, images)
        np.testing.assert_array_equal(again_labels, labels)
        assert open(path, "rb").read() == blob  # rebuilt whole


def test_edited_or_foreign_cache_files_are_rebuilt(dataset_cache):
    want = bundled_arrays.split_arrays("lfw_faces", "validation")
    path = bundled_arrays.cache_path("lfw_faces")
    # A header edited by hand: the arrays read back with another shape (zip CRCs still pass).
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["validation_images"] = arrays["validation_images"][:, :, :20]
    np.savez(path, **arrays)
    got = bundled_arrays.split_arrays("lfw_faces", "validation")
    np.testing.assert_array_equal(got[0], want[0])
    # Another dataset's file under this name (its own digest is consistent, its name is not).
    bundled_arrays.split_arrays("digits", "test")
    os.replace(bundled_arrays.cache_path("digits"), path)
    got = bundled_arrays.split_arrays("lfw_faces", "validation")
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    # A plain .npy array saved under the cache's name.
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    np.testing.assert_array_equal(bundled_arrays.split_arrays("lfw_faces", "validation")[0],
                                  want[0])
    umask = os.umask(0o022)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # readable by others sharing the cache


def test_a_missing_source_package_falls_back_to_tf_data(dataset_cache, monkeypatch):
    def gone():
        raise ImportError("No module named 'sklearn'")

    monkeypatch.setitem(bundled_arrays._LOADERS, "digits", gone)
    assert eval_arrays.build(_cfg("digits", None), "test", global_batch_size=8,
                             process_count=1) is None


@pytest.mark.parametrize("key,value,words", [
    ("cache", "bogus", "config.data.cache='bogus'"),
    ("image_size", -5, "image_size must be a positive number"),
    ("std", (0.0,), "std positive"),
])
def test_both_paths_refuse_the_same_bad_settings(key, value, words, dataset_cache):
    cfg = _cfg("mnist5k", None, **{key: value})
    with pytest.raises(ValueError, match=re.escape(words)):
        eval_arrays.build(cfg, "test", global_batch_size=8, process_count=1)
    with pytest.raises(ValueError, match=re.escape(words)):
        data.build(cfg, "test", global_batch_size=8, train=False, process_index=0,
                   process_count=1)


@pytest.mark.parametrize("name", ["mnist5k", "lfw_faces"])
def test_bundled_source_knows_what_the_tfds_builder_records(name, bundled_dir, no_network,
                                                            dataset_cache):
    from jaxvision.data import bundled, sources

    src = sources.get_source(_cfg(name, bundled_dir))
    assert isinstance(src, sources.BundledSource) and src._builder is None
    info = bundled.builder(name, bundled_dir).info  # what TFDS wrote when it built the records
    assert src.version == str(info.version)
    assert src.meta.class_names == tuple(info.features["label"].names)
    assert src.meta.image_shape == tuple(info.features["image"].shape)
    for split in ("train", "validation", "test"):
        assert src.has_split(split) and src.num_examples(split) == info.splits[split].num_examples
    tfds_labels = bundled.builder(name, bundled_dir).as_dataset(split="test")
    tfds_labels = sorted(int(ex["label"]) for ex in tfds_labels)
    assert sorted(src.labels("test").tolist()) == tfds_labels  # class weights count these
    assert src._builder is None  # all of it without TFDS
    # Slicing goes to TFDS, which resolves it against the same records.
    assert src.num_examples("train[:10%]") == info.splits["train[:10%]"].num_examples


def test_pipeline_autotune_is_tf_datas():
    from jaxvision.data import pipeline
    from jaxvision.data._tf import tf

    assert pipeline.AUTOTUNE == tf.data.AUTOTUNE


def test_a_single_number_mean_or_std_is_every_channels():
    from jaxvision.data import preprocess

    meta = preprocess.Meta("digits", (8, 8, 1), tuple("0123456789"))
    for kw in ({"std": 0.5}, {"mean": 0.5}, {"mean": 0.25, "std": 0.5}):
        r = preprocess.resolve(_cfg("digits", None, channels=3, **kw), meta)
        for key, value in kw.items():
            assert getattr(r, key) == (value,) * 3
