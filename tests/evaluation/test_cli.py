"""End to end: the default job's run (tests/conftest.py), then `python -m jaxvision.evaluate/predict
--json`."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as skm

from tests.evaluation import references as ref

pytestmark = pytest.mark.slow
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def workdir(default_job):
    return default_job["workdir"]


def run_cli(module, *args):
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    return proc


def reference_logits(run, split):
    from jaxvision import data

    logits, labels = [], []
    for batch in data.build(run.config.data, split, global_batch_size=200, train=False):
        z = np.asarray(run.model.apply(run.variables, batch["image"], train=False))
        logits.append(z[batch["mask"]])
        labels.append(batch["label"][batch["mask"]])
    return np.concatenate(logits), np.concatenate(labels)


def test_evaluate_and_predict_json(workdir, tmp_path):
    from jaxvision import data
    from jaxvision.training import checkpoints

    out_dir = str(tmp_path / "eval")  # the shared run stays read-only
    proc = run_cli("jaxvision.evaluate", f"--workdir={workdir}", "--json", "--calibrate",
                   "--batch_size=96", f"--output={out_dir}", "--plots")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)  # stdout holds the JSON object and nothing else

    run = checkpoints.load_run(workdir)
    z, y = reference_logits(run, "test")
    p = ref.softmax(z)
    pred = p.argmax(1)
    for key in ("top1", "top5", "nll", "brier", "ece", "mce", "adaptive_ece", "classwise_ece",
                "f1_macro", "auc_macro", "balanced_accuracy", "precision", "recall", "f1",
                "confusion_matrix"):
        assert key in result, key
    assert result["num_examples"] == len(y) == 500 and result["step"] == run.step
    expected = {
        "top1": skm.accuracy_score(y, pred),
        "top5": skm.top_k_accuracy_score(y, p, k=5),
        "nll": skm.log_loss(y, p, labels=range(10)),
        "ece": ref.ece_mce(p, y)[0],
        "auc_macro": skm.roc_auc_score(y, p, multi_class="ovr"),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
    }
    for key, want in expected.items():
        assert result[key] == pytest.approx(want, abs=1e-5), key
    assert result["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    cal = result["calibration"]
    assert cal["fit_split"] == "validation" and cal["temperature"] > 0
    assert cal["after"]["top1"] == result["top1"] and cal["val_nll_after"] <= cal["val_nll_before"]
    assert os.path.exists(os.path.join(out_dir, "metrics.json"))
    assert os.path.getsize(os.path.join(out_dir, "reliability_diagram.png")) > 1000

    # predict: two images and a corrupt file.
    rng = np.random.default_rng(0)
    files = []
    for i in range(2):
        files.append(str(tmp_path / f"img{i}.png"))
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(files[-1])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    proc = run_cli("jaxvision.predict", f"--workdir={workdir}", "--json", "--top_k=3",
                   files[0], str(bad), files[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bad.jpg" in proc.stderr
    preds = json.loads(proc.stdout)
    assert [r["file"] for r in preds] == [files[0], str(bad), files[1]]
    assert "error" in preds[1] and "top_k" not in preds[1]
    for r in (preds[0], preds[2]):
        x = data.preprocess_for_eval(run.config.data, data.load_image(r["file"]))
        probs = ref.softmax(np.asarray(run.model.apply(run.variables, x[None], train=False)))[0]
        order = np.argsort(-probs)[:3]
        assert [t["class"] for t in r["top_k"]] == [run.class_names[j] for j in order]
        np.testing.assert_allclose([t["prob"] for t in r["top_k"]], probs[order], atol=1e-5)

    proc = run_cli("jaxvision.predict", f"--workdir={workdir}", str(bad))
    assert proc.returncode != 0 and "bad.jpg" in proc.stderr


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_bundled_run_commands_import_no_tensorflow_plots_or_sweeps(command, workdir, tmp_path):
    # predict of a bundled-dataset run decodes with Pillow and transforms in NumPy; evaluate reads
    # the bundled split as NumPy arrays through the same transform (both bit for bit the
    # pipeline's). Neither pays for TensorFlow/TFDS (3-5 CPU s), matplotlib (plots only with
    # --plots), sklearn (TF's keras imports it) or Optuna. Checked in the command's own interpreter.
    from jaxvision.data import bundled_arrays

    image = str(tmp_path / "digit.png")
    Image.fromarray(bundled_arrays.split_arrays("mnist5k", "test")[0][7, :, :, 0]).save(image)
    args = [image] if command == "predict" else [f"--output={tmp_path / 'eval'}"]
    heavy = ("tensorflow", "tensorflow_datasets", "matplotlib", "sklearn", "optuna", "torch")
    code = ("import runpy, sys\n"
            f"sys.argv = ['jaxvision.{command}', '--workdir={workdir}', '--json', *{args!r}]\n"
            f"try:\n    runpy.run_module('jaxvision.{command}', run_name='__main__', "
            "alter_sys=True)\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            f"print('LOADED', [m for m in {heavy!r} if m in sys.modules])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    *answer, loaded = proc.stdout.strip().splitlines()
    assert loaded == "LOADED []", proc.stdout
    result = json.loads("\n".join(answer))
    if command == "predict":
        assert result[0]["top_k"]
    else:
        assert result["num_examples"] == 500 and 0.0 <= result["top1"] <= 1.0


def test_evaluate_refuses_an_output_file_before_work_and_tf_data_fallback_is_quiet(workdir,
                                                                                    tmp_path):
    a_file = tmp_path / "metrics.txt"
    a_file.write_text("keep me")
    proc = run_cli("jaxvision.evaluate", f"--workdir={workdir}", f"--output={a_file}")
    assert proc.returncode == 2 and a_file.read_text() == "keep me"
    assert proc.stderr.strip().splitlines() == [f"error: --output {a_file} is a file; give a "
                                                "folder for the outputs"]
    # A sliced split needs tf.data: TensorFlow is imported mid-run, its banners still filtered.
    proc = run_cli("jaxvision.evaluate", f"--workdir={workdir}", "--split=test[:40%]", "--json",
                   f"--output={tmp_path / 'eval'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["num_examples"] == 200
    assert not re.search(r"^(I\d{4} |.*oneDNN|.*absl::InitializeLog)", proc.stderr, re.M), proc.stderr
