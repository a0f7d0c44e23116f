"""Every ``--json`` command prints exactly one JSON document on stdout, also on a first run that
builds the bundled dataset into an empty data dir (TFDS's messages go to stderr, and say
"building": nothing is downloaded). The documents are checked against each other and against
numpy: evaluate's confusion matrix against its own counts, predict's probabilities against the
model applied to the same pixels, compression's top-1 before quantization against evaluate's."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from tests.cli.commands import REPO, run_command

pytestmark = pytest.mark.slow
MNIST5K_TEST = 500  # 50 per class (jaxvision.data.bundled)


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    """An untrained LeNet-5 run directory on mnist5k whose data dir is empty."""
    from jaxvision import cli, models
    from jaxvision.convert.checkpoint import save_variables
    from jaxvision.training.checkpoints import model_overrides

    recipe = cli.load_recipe(os.path.join(REPO, "configs", "mnist5k_lenet.py"))
    root = tmp_path_factory.mktemp("json")
    config = recipe
    with config.unlocked():
        config.data.data_dir = str(root / "empty_data_dir")
    size, channels = config.data.image_size or 28, config.data.channels or 1
    model = models.create("lenet5", num_classes=10, **model_overrides(config))
    variables = model.init(jax.random.key(0), jnp.zeros((1, size, size, channels)), train=False)
    run = save_variables(str(root / "run"), dict(variables), model_name="lenet5", num_classes=10,
                         image_shape=(size, size, channels), config=config,
                         class_names=[str(i) for i in range(10)], step=7)
    digit = np.zeros((28, 28), np.uint8)
    digit[6:9, 6:22] = 255
    digit[9:22, 18:21] = 255
    Image.fromarray(digit).save(root / "seven.png")
    return {"root": str(root), "run": run, "image": str(root / "seven.png"), "config": config}


def _one_document(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)  # fails on anything but exactly one JSON document


def test_every_json_command_prints_one_document(lenet_run):
    from jaxvision import data
    from jaxvision.training import checkpoints

    run_dir, root = lenet_run["run"], lenet_run["root"]
    # A sliced split goes through tf.data, which builds the bundled dataset into the empty data
    # dir on this first run: TFDS's build messages must stay off stdout. (A plain split is read
    # as NumPy arrays and builds nothing: tests/evaluation/test_cli.py.)
    proc = run_command("jaxvision.evaluate", f"--workdir={run_dir}", "--json", "--plots=false",
                       "--split=test[:100%]")
    result = _one_document(proc)
    assert "building bundled dataset mnist5k" in proc.stderr
    assert "ownload" not in proc.stderr + proc.stdout
    assert "oneDNN" not in proc.stderr  # no C++ banners without --verbosity
    assert result["num_examples"] == MNIST5K_TEST
    cm = np.asarray(result["confusion_matrix"])
    assert cm.sum() == MNIST5K_TEST and np.trace(cm) / MNIST5K_TEST == pytest.approx(
        result["top1"])

    proc = run_command("jaxvision.predict", f"--workdir={run_dir}", "--json", "--top_k=10",
                       lenet_run["image"])
    (prediction,) = _one_document(proc)
    run = checkpoints.load_run(run_dir)
    pixels = data.preprocess_for_eval(run.config.data, data.load_image(lenet_run["image"]))
    ref = np.asarray(jax.nn.softmax(run.model.apply(run.variables, pixels[None], train=False)))[0]
    got = {int(t["class"]): t["prob"] for t in prediction["top_k"]}
    np.testing.assert_allclose([got[k] for k in range(10)], ref, rtol=1e-4, atol=1e-7)

    proc = run_command("jaxvision.explain", f"--workdir={run_dir}", "--json",
                       "--method=saliency", f"--output={os.path.join(root, 'ex')}",
                       lenet_run["image"], os.path.join(root, "missing.png"))
    explained = _one_document(proc)
    assert explained[0]["class"] == str(int(ref.argmax())) and os.path.isfile(
        explained[0]["output"])
    assert "error" in explained[1] and "missing.png" in proc.stderr

    proc = run_command("jaxvision.compression", "quantize", f"--workdir={run_dir}", "--json",
                       "--split=test", f"--output={os.path.join(root, 'q')}")
    report = _one_document(proc)
    assert report["top1_before"] == pytest.approx(result["top1"])
    assert report["size_bytes_after"] < report["size_bytes_before"] / 3  # int8 vs float32
    # The quantized run is the source checkpoint's weights: it reports that checkpoint's step.
    from jaxvision.training import checkpoints

    assert result["step"] == checkpoints.load_run(os.path.join(root, "q")).step == 7


def test_bad_input_is_one_error_line(lenet_run):
    cases = [
        ("jaxvision.predict", "--workdir=" + lenet_run["run"], "--top_k=0", lenet_run["image"]),
        ("jaxvision.predict", "--workdir=/no/such/run", lenet_run["image"]),
        ("jaxvision.evaluate", "--workdir=" + lenet_run["run"], "--config.data.nmae=x"),
        ("jaxvision.explain", "--workdir=" + lenet_run["run"], "--method=rollout",
         lenet_run["image"]),
        ("jaxvision.compression", "shrink", "--workdir=" + lenet_run["run"]),
        # every error path ends with its error line: no summary or log line after it
        ("jaxvision.evaluate", "--workdir=" + lenet_run["run"], "--config.remat=full"),  # no effect
        ("jaxvision.evaluate", "--workdir=" + lenet_run["run"], "--checkpoint=55"),
        ("jaxvision.explain", "--workdir=" + lenet_run["run"], "--layer=nosuch",
         lenet_run["image"]),
    ]
    for args in cases:
        proc = run_command(*args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        assert lines[-1].startswith("error: ") and "Traceback" not in proc.stderr, args
        assert [line for line in lines if line.startswith("error:")] == lines[-1:], args
