import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxvision import models
from jaxvision.config import base_config
from jaxvision.convert.checkpoint import save_variables


@pytest.mark.slow
def test_explain_cli_writes_overlays_named_by_predicted_class(tmp_path, capsys):
    from jaxvision.explain.__main__ import main

    model = models.create("lenet5", num_classes=10)
    variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, 32, 32, 1))))(jax.random.key(0))
    config = base_config()
    config.model.name = "lenet5"
    config.data.name = "mnist5k"
    config.data.image_size = 32
    config.data.channels = 1
    names = [f"digit{i}" for i in range(10)]
    run_dir = save_variables(
        str(tmp_path / "run"),
        dict(variables),
        model_name="lenet5",
        num_classes=10,
        image_shape=(32, 32, 1),
        class_names=names,
        config=config,
    )
    img = np.zeros((28, 28, 3), np.uint8)
    img[8:20, 12:16] = 255
    Image.fromarray(img).save(tmp_path / "one.png")
    for method in ("gradcam", "saliency"):
        assert (
            main(
                [
                    "--workdir",
                    run_dir,
                    "--method",
                    method,
                    "--which",
                    "latest",
                    str(tmp_path / "one.png"),
                ]
            )
            == 0
        )
    lines = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 2
    for _path, name, prob, out in lines:
        assert name in names and 0 < float(prob) <= 1
        assert os.path.basename(out).startswith("one.") and out.endswith(f".{name}.png")
        assert Image.open(out).size[0] > 200
    with pytest.raises(SystemExit):
        main(["--workdir", run_dir, str(tmp_path / "missing.png")])
