"""One file -> pixels decoder: every file read as a viewer shows it, and training batches,
evaluation batches and predict see the same model input for it."""

import logging
import types

import numpy as np
import pytest
from PIL import Image

from jaxvision import data
from jaxvision.data import image_file
from jaxvision.evaluation import predictor
from tests.data.image_corpus import _over_white, _stroke, write_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return root, write_corpus(root)


def _cfg(root, **kw):
    c = data.default_config()
    c.name, c.path = "image_folder", str(root)
    c.image_size, c.mean, c.std = 8, "none", "none"
    c.val_fraction, c.test_fraction = 0.0, 0.0
    c.train_crop, c.eval_crop_fraction, c.flip = "resize", 1.0, False
    for k, v in kw.items():
        c[k] = v
    return c


def test_every_file_reads_as_a_viewer_shows_it(corpus):
    _, cases = corpus
    for name, case in cases.items():
        got = image_file.read(case.path)
        assert got.dtype == np.uint8 and got.shape == case.expected.shape, name
        diff = np.abs(got.astype(int) - case.expected.astype(int)).max()
        assert diff <= case.atol, f"{name}: off by {diff} levels"
    # upright: the EXIF-6 file is stored 16 wide x 8 tall and shown 8 wide x 16 tall
    assert image_file.read(cases["exif6"].path).shape == (16, 8, 3)
    # composited: the stroke keeps its contrast against the background (235 levels, not ~20)
    stroke = image_file.read(cases["rgba"].path)
    assert int(stroke.max()) - int(stroke.min()) == 235


def _by_label(batches, n):
    rows = {}
    for b in batches:
        for image, label, mask in zip(b["image"], b["label"], b["mask"], strict=True):
            if mask:
                rows[int(label)] = image
    assert sorted(rows) == list(range(n))
    return rows


def _predict_inputs(monkeypatch, cfg, paths):
    """The model input `predict_files` builds for `paths` (captured before the model runs)."""
    seen = {}

    def capture(run, images, batch_size=64):
        seen["images"] = np.asarray(images)
        return np.full((len(images), 2), 0.5)

    monkeypatch.setattr(predictor, "predict_images", capture)
    run = types.SimpleNamespace(config=types.SimpleNamespace(data=cfg), class_names=None)
    results = predictor.predict_files(run, paths, top_k=1)
    assert all("top_k" in r for r in results), [r.get("error") for r in results]
    return seen["images"]


@pytest.mark.parametrize("channels", [3, 1])
def test_training_evaluation_and_predict_see_the_same_pixels(corpus, monkeypatch, channels):
    root, cases = corpus
    cfg = _cfg(root, channels=channels)
    ev = data.build(cfg, "train", global_batch_size=8, train=False, process_index=0,
                    process_count=1)
    names = ev.info.class_names
    assert names == sorted(cases)
    n = len(names)
    evaluation = _by_label(ev, n)
    train = _by_label([next(iter(data.build(cfg, "train", global_batch_size=n, train=True,
                                            seed=3, process_index=0, process_count=1)))], n)
    predicted = _predict_inputs(monkeypatch, cfg, [cases[c].path for c in names])
    for label, name in enumerate(names):
        np.testing.assert_array_equal(train[label], evaluation[label], err_msg=name)
        np.testing.assert_array_equal(predicted[label], evaluation[label], err_msg=name)
        np.testing.assert_array_equal(data.load_for_eval(cfg, cases[name].path),
                                      evaluation[label], err_msg=name)
        # ... and it is the viewer's picture, resized: pixels -> the pipeline's eval transform
        shown = Image.fromarray(cases[name].expected).convert("L" if channels == 1 else "RGB")
        want = data.preprocess_for_eval(cfg, np.asarray(shown))
        atol = (cases[name].atol + 0.5) / 255 if cases[name].atol else 0
        np.testing.assert_allclose(evaluation[label], want, atol=atol, rtol=0, err_msg=name)


def test_alpha_background_is_a_config_choice(corpus):
    root, cases = corpus
    rgb, alpha = _stroke()
    black = np.round(rgb * (alpha[..., None] / 255.0)).astype(np.uint8)
    got = image_file.read(cases["rgba"].path, background="black")
    np.testing.assert_allclose(got, black, atol=1)
    np.testing.assert_allclose(image_file.read(cases["rgba"].path), _over_white(rgb, alpha),
                               atol=1)
    cfg = _cfg(root, alpha_background="#000000")
    np.testing.assert_allclose(data.load_for_eval(cfg, cases["rgba"].path),
                               data.preprocess_for_eval(cfg, black), atol=1.5 / 255)
    with pytest.raises(ValueError, match="alpha_background.*not a colour"):
        data.resolve_config(_cfg(root, alpha_background="transparent-ish"))


def test_unreadable_files_are_named(tmp_path):
    bad = tmp_path / "truncated.jpg"
    Image.new("RGB", (32, 32), (1, 2, 3)).save(tmp_path / "ok.jpg")
    bad.write_bytes((tmp_path / "ok.jpg").read_bytes()[:40])
    with pytest.raises(data.DataError, match="truncated.jpg"):
        data.load_image(str(bad))
    with pytest.raises(data.DataError, match="does not exist"):
        data.load_image(str(tmp_path / "missing.png"))
    Image.fromarray(np.ones((4, 4), np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(data.DataError, match="float"):
        data.load_image(str(tmp_path / "float.tif"))


def test_skip_corrupt_names_the_skipped_files(tmp_path, caplog):
    root = tmp_path / "f"
    for c in ("a", "b"):
        for i in range(3):
            (root / c).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (6, 6), (40 * i, 9, 9)).save(root / c / f"{i}.png")
    broken = [root / "a" / f"broken{i}.jpg" for i in range(7)]
    for p in broken:
        p.write_bytes(b"not an image")
    with caplog.at_level(logging.WARNING, logger="jaxvision"):
        pipe = data.build(_cfg(root, skip_corrupt=True), "train", global_batch_size=2,
                          train=True, process_index=0, process_count=1)
    assert pipe.info.num_skipped == 7
    assert sorted(p for p, _ in pipe.info.skipped) == sorted(map(str, broken))
    logged = caplog.text
    assert "skipped 7" in logged and str(broken[0]) in logged and "2 more" in logged
    out = data.write_skipped_files(pipe.info.skipped, str(tmp_path))
    lines = (tmp_path / "skipped_files.txt").read_text().splitlines()
    assert out.endswith("skipped_files.txt")
    assert sorted(line.split("\t")[0] for line in lines) == sorted(map(str, broken))
    assert data.write_skipped_files((), str(tmp_path)) is None
    assert not (tmp_path / "skipped_files.txt").exists()



def test_live_training_streams_are_closed_at_exit(tmp_path):
    """Python decoding runs in tf.data threads; a stream still alive when the interpreter shuts
    down could keep the process from exiting, so the exit hook closes every live one."""
    from jaxvision.data import pipeline

    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(2):
            Image.new("RGB", (9, 7), (30 * i, 60, 90)).save(tmp_path / c / f"{i}.png")
    it = iter(data.build(_cfg(tmp_path), "train", global_batch_size=2, train=True,
                         process_index=0, process_count=1))
    assert next(it)["image"].shape == (2, 8, 8, 3)
    assert it in pipeline._LIVE_ITERATORS
    pipeline._close_live_iterators()  # what atexit runs
    with pytest.raises(StopIteration):
        next(it)
