"""Resuming on other data (renamed class folder, deleted files) is refused with what changed and
how to proceed; a single-class folder is refused before the first step."""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.reliability import harness

pytestmark = pytest.mark.slow

RECIPE = '''
from jaxvision.config import base_config, lock


def get_config(arg=None):
    c = base_config()
    c.model.name = "lenet5"
    c.data.name = "image_folder"
    c.data.path = {path!r}
    c.data.image_size = 32
    c.data.channels = 1
    c.data.flip = False
    c.batch_size = 8
    c.total_steps = 4
    c.checkpoint_every_steps = 2
    c.eval_every_steps = 0
    c.log_every_steps = 1
    c.progress_bar = False
    return lock(c)
'''


def _image_folder(root, classes=("a", "b"), per_class=10):
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        os.makedirs(os.path.join(root, name))
        for i in range(per_class):
            pixels = rng.integers(0, 100, (16, 16, 3)) + 120 * k
            Image.fromarray(pixels.astype(np.uint8)).save(os.path.join(root, name, f"{i}.png"))


def _job(tmp_path, root):
    recipe = tmp_path / "folder_recipe.py"
    recipe.write_text(RECIPE.format(path=str(root)))
    return ["--config", str(recipe)]


def test_changed_data_is_refused_with_what_changed(tmp_path):
    root, wd = tmp_path / "images", str(tmp_path / "run")
    _image_folder(root)
    job = _job(tmp_path, root)
    first = harness.run(wd, job=job)
    assert first.returncode == 0, first.stderr[-3000:]

    os.rename(root / "a", root / "z")  # same images, other class name: labels would swap
    renamed = harness.run(wd, "--config.total_steps=6", job=job)
    line = harness.assert_one_error(renamed)
    assert "class names changed (removed ['a'], added ['z'])" in line, line
    assert f"--config.init_from={wd}" in line and "new --workdir" in line

    os.rename(root / "z", root / "a")
    removed = (root / "b" / "3.png").read_bytes()
    os.remove(root / "b" / "3.png")  # fewer files: the stratified splits move
    deleted = harness.run(wd, "--config.total_steps=6", job=job)
    line = harness.assert_one_error(deleted)
    assert "split 'train' changed: 16 -> 15 files" in line, line

    (root / "b" / "3.png").write_bytes(removed)
    assert harness.run(wd, "--config.total_steps=4", job=job).returncode == 0  # same data again
    rebatched = harness.run(wd, "--config.total_steps=6", "--config.batch_size=4", job=job)
    line = harness.assert_one_error(rebatched)  # step k = example k x batch: another stream
    assert "batch_size 8, this config has 4" in line and "--config.batch_size=8" in line, line
    assert harness.checkpoint_steps(wd) == [2, 4]  # nothing was written by the refused runs


def test_single_class_folder_is_refused_before_training(tmp_path):
    root, wd = tmp_path / "images", str(tmp_path / "run")
    _image_folder(root, classes=("only",))
    result = harness.run(wd, job=_job(tmp_path, root))
    line = harness.assert_one_error(result)
    assert "1 class(es) (['only'])" in line and "at least 2" in line, line
    assert not os.path.exists(os.path.join(wd, "checkpoints", "0"))
    shutil.rmtree(wd, ignore_errors=True)
