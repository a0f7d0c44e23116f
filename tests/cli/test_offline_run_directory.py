"""A converted model is a run directory that predict, evaluate (on an image folder given with
--config.data.*) and explain use with the network cut off; their --json output is one document.

References: the evaluation pipeline's own preprocessing of the same files (predict must give the
model the same input, DESIGN "one file -> pixels function"), scikit-learn's accuracy of predict's
top-1 against the folder's labels (evaluate's top1), and the converted weights themselves.
"""

import json
import os

import jax
import numpy as np
import pytest
from sklearn import metrics as skm

from tests.cli import fixtures
from tests.cli.commands import run_command

pytestmark = pytest.mark.slow
CLASSES = ("cat", "dog", "fox")
SIZE = 64  # ResNet-18 runs at any size; 64 px keeps the test cheap


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("offline")
    weights = fixtures.write_safetensors(str(root / "r18.safetensors"),
                                         fixtures.resnet18_state_dict(len(CLASSES)))
    names = root / "classes.txt"
    names.write_text("\n".join(CLASSES) + "\n")
    folder = fixtures.image_folder(str(root / "images"), CLASSES, per_class=2)
    out = str(root / "r18")
    proc = run_command("jaxvision.convert", "--source=torch", "--model=resnet18",
                       f"--input={weights}", f"--output={out}", f"--class_names={names}",
                       f"--image_size={SIZE}", "--json", offline_dir=str(root))
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout)
    return {"root": str(root), "run": out, "folder": folder, "record": record}


def test_convert_records_source_preprocessing_and_names(converted):
    from jaxvision.training import checkpoints

    record = converted["record"]
    assert record["preprocessing"] == {"image_size": SIZE, "channels": 3,
                                       "mean": [0.485, 0.456, 0.406],
                                       "std": [0.229, 0.224, 0.225], "eval_crop_fraction": 0.875}
    run = checkpoints.load_run(converted["run"])
    assert run.class_names == list(CLASSES) and run.config.data.image_size == SIZE
    sd = fixtures.resnet18_state_dict(len(CLASSES))  # the weights arrived unchanged
    np.testing.assert_array_equal(np.asarray(run.variables["params"]["head"]["kernel"]),
                                  sd["fc.weight"].T)
    assert os.path.isfile(record["finetune_recipe"])


def test_predict_evaluate_explain_offline(converted):
    from jaxvision import data
    from jaxvision.training import checkpoints

    run_dir, folder, root = converted["run"], converted["folder"], converted["root"]
    proc = run_command("jaxvision.predict", f"--workdir={run_dir}", "--top_k=3", "--json",
                       folder, offline_dir=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    predictions = json.loads(proc.stdout)
    assert [os.path.relpath(p["file"], folder) for p in predictions] == [
        f"{c}/{i}.png" for c in CLASSES for i in range(2)]

    # Reference: the evaluation pipeline's input for the same files (folder order, 'test' split
    # = every file for a converted run), through the converted weights.
    run = checkpoints.load_run(run_dir)
    cfg = run.config.data
    with cfg.unlocked():
        cfg.path = folder
    (batch,) = list(data.build(cfg, "test", global_batch_size=6, train=False))
    logits = np.asarray(run.model.apply(run.variables, batch["image"], train=False))
    probs = np.asarray(jax.nn.softmax(logits, axis=-1))
    for p, ref in zip(predictions, probs, strict=True):
        top = [CLASSES.index(t["class"]) for t in p["top_k"]]
        assert top == list(np.argsort(-ref, kind="stable")[:3])
        np.testing.assert_allclose([t["prob"] for t in p["top_k"]], ref[top], rtol=1e-4,
                                   atol=1e-6)

    out = os.path.join(root, "eval")
    proc = run_command("jaxvision.evaluate", f"--workdir={run_dir}",
                       f"--config.data.path={folder}", "--batch_size=6", f"--output={out}",
                       "--json", offline_dir=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    labels = np.repeat(np.arange(len(CLASSES)), 2)
    predicted = [CLASSES.index(p["top_k"][0]["class"]) for p in predictions]
    assert result["num_examples"] == 6
    assert result["top1"] == pytest.approx(skm.accuracy_score(labels, predicted))
    assert os.path.isfile(os.path.join(out, "metrics.json"))

    proc = run_command("jaxvision.explain", f"--workdir={run_dir}", "--json",
                       f"--output={os.path.join(root, 'explain')}", folder, offline_dir=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    explained = json.loads(proc.stdout)
    assert [e["class"] for e in explained] == [p["top_k"][0]["class"] for p in predictions]
    outputs = [e["output"] for e in explained]
    assert len(set(outputs)) == 6 and all(os.path.getsize(o) > 5000 for o in outputs)


def test_evaluate_without_data_says_how_to_give_it(converted):
    proc = run_command("jaxvision.evaluate", f"--workdir={converted['run']}", "--json",
                       offline_dir=converted["root"])
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "--config.data.path=FOLDER" in proc.stderr


def test_export_offline(converted, tmp_path):
    """stablehlo (no TensorFlow converter: the cheapest format for a ResNet) with the network
    cut; the exported model on the files' uint8 pixels equals the converted model on the
    evaluation pipeline's batch of the same files."""
    from jaxvision import data, export
    from jaxvision.training import checkpoints

    run_dir, folder, root = converted["run"], converted["folder"], converted["root"]
    out = str(tmp_path / "r18.stablehlo")
    proc = run_command("jaxvision.export", f"--workdir={run_dir}", "--format=stablehlo",
                       f"--output={out}", "--input_size=48", "--json", offline_dir=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["format"] == "stablehlo" and summary["bytes"] == os.path.getsize(out)
    run = checkpoints.load_run(run_dir)
    cfg = run.config.data
    with cfg.unlocked():
        cfg.path = folder
    (batch,) = list(data.build(cfg, "test", global_batch_size=6, train=False))
    want = np.asarray(jax.nn.softmax(run.model.apply(run.variables, batch["image"], train=False)))
    files = [os.path.join(folder, c, f"{i}.png") for c in CLASSES for i in range(2)]
    pixels = np.stack([data.load_image(f) for f in files])  # 48x48, the --input_size
    got = export.load_exported("stablehlo", out)(pixels)
    np.testing.assert_allclose(got, want, atol=1e-4)
