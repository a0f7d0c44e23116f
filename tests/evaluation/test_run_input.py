"""A run's preprocessing resolved from the run directory alone equals what the data pipeline
resolves with the dataset at hand (``data.resolve_config`` opens it)."""

import types

import pytest

from jaxvision import data
from jaxvision.config import base_config
from jaxvision.evaluation.run_input import resolve_run
from tests.cli import fixtures


def _run(**data_keys):
    config = base_config()
    for k, v in data_keys.items():
        config.data[k] = v
    return types.SimpleNamespace(config=config, class_names=["a", "b"], image_shape=None)


@pytest.mark.parametrize("keys", [
    {"name": "mnist5k"},
    {"name": "mnist5k", "image_size": 32, "eval_crop_fraction": 0.9},
    {"name": "digits", "channels": 3, "mean": "none", "std": "none"},
])
def test_bundled_datasets_resolve_as_the_pipeline_without_building(keys):
    run = _run(**keys)
    assert resolve_run(run) == data.resolve_config(run.config.data)


def test_image_folder_resolves_as_the_pipeline_and_without_the_folder(tmp_path):
    folder = fixtures.image_folder(str(tmp_path / "f"), ("a", "b"), per_class=1, size=20)
    run = _run(name="image_folder", path=folder, image_size=48)
    assert resolve_run(run) == data.resolve_config(run.config.data)
    run.config.data.path = str(tmp_path / "gone")  # moved away: predict still works
    assert resolve_run(run).eval_crop_fraction == 0.875


def test_tfds_dataset_resolves_from_its_declaration_offline(tmp_path):
    run = _run(name="cifar10", data_dir=str(tmp_path / "empty"))  # not downloaded
    r = resolve_run(run)
    assert (r.image_size, r.channels, r.eval_crop_fraction) == (32, 3, 1.0)
    assert r.mean == data.preprocess.NORMALIZATION["cifar10"][0]
    assert not (tmp_path / "empty" / "downloads").exists()
