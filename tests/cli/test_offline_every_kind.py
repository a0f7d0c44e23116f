"""Every kind of run directory works offline: the default job's trained run, and the quantized,
pruned and distilled runs that ``python -m jaxvision.compression`` makes of it (themselves made
with the network cut), each with ``predict``, ``evaluate --config.data.*`` on an image folder,
``explain`` and ``export``. Converted runs: tests/cli/test_offline_run_directory.py.

References: the model of each run directory applied to the evaluation pipeline's batch of the
same files (``data.build``, DESIGN "one file -> pixels"), scikit-learn's accuracy of predict's
top-1 against the folder's labels, and predict's probabilities for the exported models.
"""

import json
import os

import jax
import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as skm

from tests.cli.commands import REPO, run_command

pytestmark = pytest.mark.slow
PER_CLASS = 2
# Which commands run on which kind: every command meets the trained run, export also the
# quantized one, and every kind meets predict (each call is a process start, ~10 CPU-s: the
# compressed runs differ from the trained one in their run directory, which predict reads as
# evaluate/explain/export do, through checkpoints.load_run and run_input.resolve_run).
CHECKS = [("trained", "evaluate"), ("trained", "explain"), ("trained", "export"),
          ("quantized", "predict"), ("quantized", "export"), ("pruned", "predict"),
          ("distilled", "predict")]


@pytest.fixture(scope="module")
def runs(default_job, tmp_path_factory):
    """{kind: run directory}; the digit folder FOLDER/<class>/<i>.png (the first 2 test digits
    of each class) and each file's index in the test split; a scratch root. Compression runs
    with the network cut."""
    from jaxvision.data import sources
    from jaxvision.data._tf import tfds
    from jaxvision.training import checkpoints

    root = tmp_path_factory.mktemp("every_kind")
    trained = default_job["workdir"]
    run = checkpoints.load_run(trained)
    source = sources.get_source(run.config.data)
    folder = root / "digits"
    index, seen = {}, dict.fromkeys(run.class_names, 0)
    split = source.builder.as_dataset(split="test", shuffle_files=False)
    for i, ex in enumerate(tfds.as_numpy(split)):
        name = run.class_names[int(ex[source.label_key])]
        if seen[name] < PER_CLASS:
            path = folder / name / f"{seen[name]}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(ex[source.image_key][..., 0]).save(path)
            index[str(path)], seen[name] = i, seen[name] + 1
    out = {"trained": trained}
    for kind, args in {"quantized": ["quantize"],
                       "pruned": ["prune", "--sparsity=0.5", "--steps=2"],
                       "distilled": ["distill", "--steps=2", "--config",
                                     os.path.join(REPO, "configs", "mnist5k_lenet.py")]}.items():
        out[kind] = str(root / kind)
        proc = run_command("jaxvision.compression", *args, f"--workdir={trained}",
                           f"--output={out[kind]}", "--batch_size=64", "--json",
                           offline_dir=str(root))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout)["workdir"] == out[kind]
    files = sorted(index)
    return {"runs": out, "folder": str(folder), "root": str(root), "files": files,
            "test_index": np.array([index[f] for f in files])}


def reference_probabilities(workdir, test_index):
    """(N, K) softmax of the run's model on its own test pipeline's rows of the digits in the
    folder: the preprocessing the run was trained and evaluated with."""
    from jaxvision import data
    from jaxvision.training import checkpoints

    run = checkpoints.load_run(workdir)
    (batch,) = list(data.build(run.config.data, "test", global_batch_size=500, train=False))
    images = np.asarray(batch["image"])[test_index]
    return np.asarray(jax.nn.softmax(run.model.apply(run.variables, images, train=False)))


def _predict(workdir, folder, root):
    proc = run_command("jaxvision.predict", f"--workdir={workdir}", "--top_k=10", "--json",
                       folder, offline_dir=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)
    names = [t["class"] for t in results[0]["top_k"]]
    probs = np.zeros((len(results), len(names)))
    for row, r in zip(probs, results, strict=True):
        for t in r["top_k"]:
            row[int(t["class"])] = t["prob"]
    return [r["file"] for r in results], probs


@pytest.mark.parametrize("kind, command", CHECKS, ids=[f"{k}-{c}" for k, c in CHECKS])
def test_command_works_offline_on_run_kind(runs, kind, command, tmp_path):
    workdir, folder, root, files = (runs["runs"][kind], runs["folder"], runs["root"],
                                    runs["files"])
    reference = reference_probabilities(workdir, runs["test_index"])
    labels = np.array([int(os.path.basename(os.path.dirname(f))) for f in files])
    if command == "predict":
        got_files, probs = _predict(workdir, folder, root)
        assert got_files == files
        np.testing.assert_allclose(probs, reference, atol=1e-5)
    elif command == "evaluate":  # the folder as the whole 'train' split
        proc = run_command("jaxvision.evaluate", f"--workdir={workdir}",
                           "--config.data.name=image_folder", f"--config.data.path={folder}",
                           "--config.data.val_fraction=0.0", "--config.data.test_fraction=0.0",
                           "--split=train", "--plots=false", f"--output={tmp_path}", "--json",
                           offline_dir=root)
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(proc.stdout)
        assert result["num_examples"] == len(files)
        assert result["top1"] == pytest.approx(skm.accuracy_score(labels, reference.argmax(-1)))
        assert result["nll"] == pytest.approx(skm.log_loss(labels, reference, labels=range(10)),
                                              rel=1e-4)
    elif command == "explain":
        proc = run_command("jaxvision.explain", f"--workdir={workdir}", f"--output={tmp_path}",
                           "--json", folder, offline_dir=root)
        assert proc.returncode == 0, proc.stderr[-3000:]
        explained = json.loads(proc.stdout)
        assert [e["file"] for e in explained] == files
        assert [int(e["class"]) for e in explained] == list(reference.argmax(-1))
        assert all(os.path.dirname(e["output"]) == str(tmp_path) for e in explained)
    else:
        fmt = "tflite" if kind == "quantized" else "stablehlo"
        out = str(tmp_path / f"model.{fmt}")
        proc = run_command("jaxvision.export", f"--workdir={workdir}", f"--format={fmt}",
                           f"--output={out}", "--json", offline_dir=root)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout)["format"] == fmt
        _check_exported(fmt, out, files, reference)


def _check_exported(fmt, path, files, reference):
    """The exported model on the files' uint8 pixels gives the run's probabilities."""
    from jaxvision import data, export

    pixels = np.stack([data.load_image(f) for f in files])
    np.testing.assert_allclose(export.load_exported(fmt, path)(pixels), reference, atol=1e-5)
