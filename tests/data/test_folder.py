"""Image folders: layouts, stratified split, mixed modes, corrupt files, empty classes."""

import chex
import numpy as np
import pytest
from PIL import Image

from jaxvision import data


def _write(path, mode, value, size=(20, 12), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    color = {"L": value, "RGB": (value, value // 2, 255 - value), "RGBA": (value, value, value, 90)}
    Image.new(mode, size, color[mode]).save(path, format=fmt)


def _folder(root, per_class=10, corrupt=True):
    modes = ["RGB", "L", "RGBA"]
    for c, cname in enumerate(["defective", "good"]):
        for i in range(per_class):
            mode = modes[i % 3]
            ext = "jpg" if mode == "RGB" else "png"
            _write(root / cname / f"img{i:02d}.{ext}", mode, 40 + 100 * c + i)
    if corrupt:
        (root / "good" / "broken.jpg").write_bytes(b"this is not a jpeg")
        (root / "good" / "notes.txt").write_text("hello")
    return root


def _cfg(root, **kw):
    c = data.default_config()
    c.name, c.path = "image_folder", str(root)
    c.image_size = 16
    for k, v in kw.items():
        c[k] = v
    return c


def test_corrupt_files_named_then_skipped_and_counted(tmp_path):
    root = _folder(tmp_path / "parts")
    with pytest.raises(data.DataError) as e:
        data.build(
            _cfg(root), "train", global_batch_size=4, train=True, process_index=0, process_count=1
        )
    msg = str(e.value)
    # notes.txt is not an image file name: left out, as predict leaves it out (image_listing).
    assert "broken.jpg" in msg and "notes.txt" not in msg and "skip_corrupt=True" in msg
    pipe = data.build(
        _cfg(root, skip_corrupt=True),
        "train",
        global_batch_size=4,
        train=True,
        process_index=0,
        process_count=1,
    )
    assert pipe.info.num_skipped == 1
    assert pipe.info.class_names == ["defective", "good"]


def test_single_split_is_stratified_and_mixed_modes_are_converted(tmp_path):
    root = _folder(tmp_path / "parts", corrupt=False)
    cfg = _cfg(root, val_fraction=0.2, test_fraction=0.1, mean="none", std="none")
    counts = {}
    for split in ("train", "validation", "test"):
        ev = data.build(
            cfg, split, global_batch_size=4, train=False, process_index=0, process_count=1
        )
        labels = np.concatenate([b["label"][b["mask"]] for b in ev])
        counts[split] = np.bincount(labels, minlength=2).tolist()
        b = next(iter(ev))
        chex.assert_shape(b["image"], (4, 16, 16, 3))
        assert b["image"].min() >= 0 and b["image"].max() <= 1
    assert counts == {"train": [7, 7], "validation": [2, 2], "test": [1, 1]}
    # the split is deterministic
    again = data.build(
        cfg, "test", global_batch_size=4, train=False, process_index=0, process_count=1
    )
    assert again.info.num_examples == 2


def test_gray_and_rgba_decoding_values(tmp_path):
    root = tmp_path / "f"
    _write(root / "a" / "g.png", "L", 200)
    _write(root / "b" / "rgba.png", "RGBA", 100)
    cfg = _cfg(root, val_fraction=0.0, test_fraction=0.0, mean="none", std="none")
    ev = data.build(
        cfg, "train", global_batch_size=2, train=False, process_index=0, process_count=1
    )
    b = next(iter(ev))
    # gray 200 -> RGB (200, 200, 200); RGBA (100, 100, 100, alpha 90) over the default white
    # background -> 100 * 90/255 + 255 * (1 - 90/255) = 200.3 -> 200
    over_white = round((100 * 90 + 255 * (255 - 90)) / 255)
    chex.assert_trees_all_close(
        b["image"][0], np.full((16, 16, 3), 200 / 255, np.float32), atol=1e-5
    )
    chex.assert_trees_all_close(
        b["image"][1], np.full((16, 16, 3), over_white / 255, np.float32), atol=1e-5
    )
    # predict/explain path gives the same numbers as the eval pipeline
    img = data.load_image(str(root / "a" / "g.png"))
    assert img.shape == (12, 20, 3) and img.dtype == np.uint8
    chex.assert_trees_all_close(data.preprocess_for_eval(cfg, img), b["image"][0], atol=1e-6)


def test_split_layout_and_empty_class_folder(tmp_path):
    root = tmp_path / "s"
    for split in ("train", "val"):
        for c in ("cat", "dog"):
            for i in range(3):
                _write(root / split / c / f"{i}.png", "RGB", 10 * i)
    ev = data.build(
        _cfg(root), "auto", global_batch_size=4, train=False, process_index=0, process_count=1
    )
    assert ev.info.split == "validation" and ev.info.num_examples == 6
    (root / "train" / "bird").mkdir()
    with pytest.raises(data.DataError, match="bird.*is empty"):
        data.build(
            _cfg(root), "train", global_batch_size=4, train=True, process_index=0, process_count=1
        )


def test_load_image_names_corrupt_file(tmp_path):
    p = tmp_path / "x.jpg"
    p.write_bytes(b"\xff\xd8garbage")
    with pytest.raises(data.DataError, match="x.jpg"):
        data.load_image(str(p))


def test_balanced_sampling_is_class_uniform_and_resumable(tmp_path):
    root = tmp_path / "imb"
    for i in range(12):
        _write(root / "many" / f"{i}.png", "L", 10 + i, size=(8, 8))
    for i in range(3):
        _write(root / "few" / f"{i}.png", "L", 200 + i, size=(8, 8))
    cfg = _cfg(root, val_fraction=0.0, test_fraction=0.0, image_size=8, balanced_sampling=True)
    kw = dict(global_batch_size=20, train=True, seed=1, process_index=0, process_count=1)
    it = iter(data.build(cfg, "train", **kw))
    batches = [next(it) for _ in range(12)]
    labels = np.concatenate([b["label"] for b in batches])
    frac_few = (labels == 0).mean()  # classes sorted: 'few' = 0
    assert 0.4 < frac_few < 0.6  # vs 3/15 = 0.2 without resampling
    it = iter(data.build(cfg, "train", start_step=9, **kw))
    for want in batches[9:]:
        got = next(it)
        np.testing.assert_array_equal(got["label"], want["label"])
        np.testing.assert_array_equal(got["image"], want["image"])


def test_predict_folders_skip_hidden_files_and_folders_as_training_does(tmp_path):
    # Regression: `predict FOLDER` read hidden files (macOS `._x.jpg` resource forks: "cannot
    # read" noise) and images under hidden folders (.git, .cache), which training never sees.
    from jaxvision.evaluation.predictor import expand_paths

    for rel in ["a/1.jpg", "a/sub/2.PNG", "a/._1.jpg", "a/.hidden.png", ".cache/3.png",
                "a/.git/4.jpg", "a/notes.txt"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert expand_paths([str(tmp_path)]) == [str(tmp_path / "a/1.jpg"), str(tmp_path / "a/sub/2.PNG")]
    # A file named on the command line is read even when hidden: the user asked for it.
    assert expand_paths([str(tmp_path / "a/._1.jpg")]) == [str(tmp_path / "a/._1.jpg")]
