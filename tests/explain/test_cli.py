"""``python -m jaxvision.explain`` on a LeNet-5 run directory: overlays named by the predicted
class, never overwritten, the prediction equal to the model's on the same pixels."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from jaxvision import models
from jaxvision.config import base_config
from jaxvision.convert.checkpoint import save_variables
from tests.cli.commands import run_command


@pytest.mark.slow
def test_explain_cli_writes_overlays_named_by_predicted_class(tmp_path):
    from jaxvision import data
    from jaxvision.training.checkpoints import load_run

    model = models.create("lenet5", num_classes=10)
    variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, 32, 32, 1))))(jax.random.key(0))
    config = base_config()
    config.model.name = "lenet5"
    config.data.name = "mnist5k"
    config.data.image_size = 32
    config.data.channels = 1
    names = [f"digit{i}" for i in range(10)]
    run_dir = save_variables(str(tmp_path / "run"), dict(variables), model_name="lenet5",
                             num_classes=10, image_shape=(32, 32, 1), class_names=names,
                             config=config)
    img = np.zeros((28, 28, 3), np.uint8)
    img[8:20, 12:16] = 255
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):  # the same basename twice
        Image.fromarray(img).save(tmp_path / d / "one.png")
    (tmp_path / "b" / "broken.png").write_text("not an image")

    run = load_run(run_dir)
    pixels = data.preprocess_for_eval(run.config.data, img)
    probs = np.asarray(jax.nn.softmax(run.model.apply(run.variables, pixels[None],
                                                      train=False)))[0]
    expected = names[int(probs.argmax())]

    proc = run_command("jaxvision.explain", f"--workdir={run_dir}", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "broken.png" in proc.stderr  # reported, the others explained
    lines = [line.split("\t") for line in proc.stdout.strip().splitlines()]
    assert [os.path.relpath(p, tmp_path) for p, *_ in lines] == ["a/one.png", "b/one.png"]
    outs = [out for *_, out in lines]
    assert [os.path.basename(o) for o in outs] == [f"one.gradcam.{expected}.png",
                                                   f"one-2.gradcam.{expected}.png"]
    for _, name, prob, out in lines:
        assert name == expected and float(prob) == pytest.approx(probs.max(), abs=1e-4)
        assert Image.open(out).size[0] > 200
    again = run_command("jaxvision.explain", f"--workdir={run_dir}", str(tmp_path / "a"))
    assert again.stdout.strip().endswith(f"one-3.gradcam.{expected}.png")  # never overwritten

    proc = run_command("jaxvision.explain", f"--workdir={run_dir}", str(tmp_path / "none.png"))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: ")
