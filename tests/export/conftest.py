"""The default job's LeNet-5 run on bundled mnist5k and its test digits as PNG files."""

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def lenet_workdir(default_job):
    """The default job's run directory (tests/conftest.py; 98.4% test top-1: enough signal for the
    int8 top-1 agreement)."""
    return default_job["workdir"]


@pytest.fixture(scope="session")
def lenet_run(lenet_workdir):
    from jaxvision.training import checkpoints

    return checkpoints.load_run(lenet_workdir)


@pytest.fixture(scope="session")
def test_digits(lenet_run, tmp_path_factory):
    """The 500 bundled test digits written as PNG files; returns (paths, labels)."""
    import tensorflow_datasets as tfds

    from jaxvision.data import sources

    source = sources.get_source(lenet_run.config.data)
    ds = source.builder.as_dataset(split="test", shuffle_files=False)
    folder = tmp_path_factory.mktemp("digits")
    paths, labels = [], []
    for i, ex in enumerate(tfds.as_numpy(ds)):
        path = str(folder / f"{i:03d}.png")
        Image.fromarray(ex[source.image_key][..., 0]).save(path)
        paths.append(path)
        labels.append(int(ex[source.label_key]))
    return paths, np.asarray(labels)
