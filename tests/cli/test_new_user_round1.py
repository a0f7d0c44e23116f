"""The new-user findings of the last session that were left open (closing note, "Round 1/2, not
fixed"), each checked as the user met it."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxvision import data
from jaxvision.data import image_file, image_listing, sources
from tests.cli.commands import REPO


def _write(path, value, fmt=None, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, 255 - value, 90)).save(path, fmt)


def test_training_and_predict_list_the_same_files(tmp_path):
    # Thumbs.db stopped training (not an image) unless skip_corrupt; .avif was not in predict's
    # list. Reference: the files a person would call images, written here.
    root = tmp_path / "photos"
    images = [root / "cat" / "1.jpg", root / "cat" / "2.avif", root / "cat" / "sub" / "3.PNG",
              root / "dog" / "4.webp", root / "dog" / "5.jpeg"]
    for i, p in enumerate(images):
        _write(p, 40 * i, {".avif": "AVIF", ".PNG": "PNG"}.get(p.suffix))
    for junk in ("cat/Thumbs.db", "dog/desktop.ini", "dog/notes.txt", "cat/._1.jpg"):
        (root / junk).write_bytes(b"\x00junk")
    cfg = data.default_config()
    cfg.name, cfg.path, cfg.val_fraction, cfg.test_fraction = "image_folder", str(root), 0.0, 0.0
    source = sources.get_source(cfg)  # no skip_corrupt: the junk must not stop training
    trained = sorted(source.index.splits["train"][0])
    assert trained == sorted(map(str, images))
    assert sorted(image_listing.expand_paths([str(root)])) == trained
    assert source.num_skipped == 0
    # The AVIF file decodes to its pixels (Pillow reads AVIF lossy: colour within a few levels).
    avif = image_file.read(str(images[1]))
    assert avif.shape == (10, 12, 3) and np.abs(avif.astype(int) - (40, 215, 90)).max() <= 8


def test_predict_on_an_image_folder_run_does_not_open_the_folder(tmp_path, monkeypatch):
    from jaxvision import config as config_lib
    from jaxvision import evaluation, models
    from jaxvision.convert.checkpoint import save_variables
    from jaxvision.training import checkpoints

    config = config_lib.base_config()
    with config.unlocked():
        config.data.name, config.data.path = "image_folder", str(tmp_path / "gone")
        config.data.image_size, config.model.name = 32, "lenet5"
    model = models.create("lenet5", num_classes=2)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    run_dir = save_variables(str(tmp_path / "run"), dict(variables), model_name="lenet5",
                             num_classes=2, image_shape=(32, 32, 3), config=config,
                             class_names=["cat", "dog"])
    _write(tmp_path / "x.png", 200, size=(40, 40))

    def no_folder(*args, **kwargs):
        raise AssertionError("predict indexed the training folder")

    monkeypatch.setattr(sources, "index_folder", no_folder)
    run = checkpoints.load_run(run_dir)
    (result,) = evaluation.predict_files(run, [str(tmp_path / "x.png")], top_k=2)
    # Reference: an image folder's eval transform of a one-colour image (any resize and crop
    # keeps the colour; ImageNet mean/std), with numpy.
    pixels = np.asarray(Image.open(tmp_path / "x.png").convert("RGB"), np.float32) / 255
    x = (pixels[:32, :32] - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    probs = np.asarray(jax.nn.softmax(model.apply(variables, x[None].astype(np.float32))))[0]
    assert [t["class"] for t in result["top_k"]] == [["cat", "dog"][j] for j in np.argsort(-probs)]
    np.testing.assert_allclose([t["prob"] for t in result["top_k"]], np.sort(probs)[::-1],
                               atol=1e-5)


def test_an_unreadable_file_is_named_without_python_internals(tmp_path):
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"this is not a jpeg")
    with pytest.raises(data.DataError) as e:
        data.load_image(str(bad))
    message = str(e.value)
    assert str(bad) in message and "not an image file" in message
    assert "BytesIO" not in message and "0x" not in message


def test_too_many_pixels_says_size_limit_and_how_to_raise_it(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses above twice this
    path = tmp_path / "big.png"
    Image.new("L", (50, 50)).save(path)
    with pytest.raises(image_file.ImageFileError) as e:
        image_file.read(str(path))
    message = str(e.value)
    assert "2,500 pixels" in message and "2,000" in message
    assert image_file.MAX_PIXELS_ENV in message and "DecompressionBomb" not in message
    monkeypatch.setenv(image_file.MAX_PIXELS_ENV, "10000")  # the way the message gives,
    # read when an image is read (not only at import)
    assert image_file.read(str(path)).shape == (50, 50, 3)


def test_an_unknown_flag_is_one_clean_line():
    proc = subprocess.run([sys.executable, "-m", "jaxvision.predict", "--jsn", "x.png"],
                          capture_output=True, text=True, cwd=REPO, timeout=120,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == ("error: Unknown flag --jsn. Did you mean --json? See --help "
                                   "for the flags.")


def test_sweep_table_marks_an_interrupted_trial():
    import optuna

    from jaxvision.sweep import report
    from jaxvision.sweep import study as study_lib

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize")
    done = study.ask()
    study.tell(done, 0.9)
    crashed = study.ask()
    crashed.set_user_attr("error", "FloatingPointError: loss is NaN")
    study.tell(crashed, state=optuna.trial.TrialState.FAIL)
    stopped = study.ask()
    stopped.report(0.4, step=100)
    study.tell(stopped, state=optuna.trial.TrialState.FAIL)  # as a Ctrl-C leaves it
    study_lib.retry_callback(3)(study, study.trials[stopped.number])
    table = {r["trial"]: r for r in report.rows(study, "top1")}
    assert table[stopped.number]["state"] == "interrupted"
    assert table[stopped.number]["val/top1"] == 0.4
    resumed = max(table)
    assert table[resumed]["state"] == "waiting" and f"trial {resumed}" in (
        table[stopped.number]["note"])
    assert table[crashed.number]["state"] == "fail"
