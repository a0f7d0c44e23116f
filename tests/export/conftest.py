"""A LeNet-5 run on bundled mnist5k (the default job, shortened) and its test digits as PNG files."""

import os
import sys

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def lenet_workdir(tmp_path_factory):
    from jaxvision.training import loop

    sys.path.insert(0, os.path.join(REPO, "configs"))
    try:
        import mnist5k_lenet
    finally:
        sys.path.pop(0)
    config = mnist5k_lenet.get_config()
    with config.unlocked():  # ~96% test top-1: enough signal for the int8 top-1 agreement
        config.total_steps = 300
        config.batch_size = 64
        config.eval_every_steps = 300
        config.checkpoint_every_steps = 300
        config.progress_bar = False
    path = str(tmp_path_factory.mktemp("lenet_run"))
    loop.train_and_evaluate(config, path)
    return path


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
