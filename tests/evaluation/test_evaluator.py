"""evaluate_run / predict_files / plots / report on a small linear model (no training needed)."""

import json
import os
import types

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as skm

from jaxvision import data as data_lib
from jaxvision import evaluation
from jaxvision.evaluation import plots, report
from tests.evaluation import references as ref

K = 4
SHAPE = (6, 6, 1)


class Linear(nn.Module):
    num_classes: int = K

    @nn.compact
    def __call__(self, x, train=False):
        return nn.Dense(self.num_classes, name="head")(x.reshape(x.shape[0], -1))


@pytest.fixture(scope="module")
def run():
    model = Linear()
    variables = model.init(jax.random.key(0), np.zeros((1, *SHAPE), np.float32))
    variables = jax.tree.map(lambda v: v * 3.0, variables)  # confident enough to miscalibrate
    config = ml_collections.ConfigDict({"data": {"image_size": SHAPE[0]},
                                        "model": {"num_classes": K}})
    return types.SimpleNamespace(config=config, model=model, variables=variables, step=7,
                                 class_names=["ant", "bee", "cat", "dog"])


class ListPipeline:
    """A finite evaluation pipeline of padded batches, as data.build(train=False) yields."""

    def __init__(self, images, labels, batch, split="test"):
        self.info = types.SimpleNamespace(num_classes=K, class_names=["a", "b", "c", "d"],
                                          num_examples=len(labels), image_shape=SHAPE,
                                          split=split)
        self.batches = []
        for start in range(0, len(labels), batch):
            x, y = images[start:start + batch], labels[start:start + batch]
            m = np.ones(len(y), bool)
            pad = batch - len(y)
            self.batches.append({
                "image": np.concatenate([x, np.full((pad, *SHAPE), 9.0, np.float32)]),
                "label": np.concatenate([y, np.zeros(pad, np.int32)]),
                "mask": np.concatenate([m, np.zeros(pad, bool)]),
            })

    def __iter__(self):
        return iter(self.batches)

    def __len__(self):
        return len(self.batches)


def make_split(run, n, seed):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, *SHAPE)).astype(np.float32)
    logits = np.asarray(run.model.apply(run.variables, images))
    labels = np.where(rng.random(n) < 0.6, logits.argmax(1), rng.integers(0, K, n))
    return images, labels.astype(np.int32), logits


def test_evaluate_run_matches_direct_computation_and_writes_files(run, tmp_path):
    images, labels, logits = make_split(run, 150, seed=0)
    val_images, val_labels, val_logits = make_split(run, 200, seed=1)
    out_dir = str(tmp_path / "eval")
    result = evaluation.evaluate_run(
        run, "test", pipeline=ListPipeline(images, labels, 64), calibrate=True,
        calibration_pipeline=ListPipeline(val_images, val_labels, 64, "validation"),
        out_dir=out_dir)

    # Against sklearn / numpy on logits computed here without the mesh or batching.
    p = ref.softmax(logits)
    pred = p.argmax(1)
    assert result["num_examples"] == 150 and result["step"] == 7 and result["split"] == "test"
    for got, want in [
        (result["top1"], skm.accuracy_score(labels, pred)),
        (result["nll"], skm.log_loss(labels, p, labels=range(K))),
        (result["auc_macro"], skm.roc_auc_score(labels, p, multi_class="ovr")),
        (result["ece"], ref.ece_mce(p, labels)[0]),
        (result["f1_macro"], skm.f1_score(labels, pred, average="macro")),
    ]:
        assert got == pytest.approx(want, abs=1e-5)
    np.testing.assert_array_equal(result["confusion_matrix"], skm.confusion_matrix(labels, pred))

    cal = result["calibration"]
    assert cal["fit_split"] == "validation"
    t = evaluation.fit_temperature(val_logits, val_labels)
    assert cal["temperature"] == pytest.approx(t, rel=1e-4)
    assert cal["after"]["top1"] == result["top1"]
    assert cal["after"]["nll"] == pytest.approx(
        skm.log_loss(labels, ref.softmax(logits / t), labels=range(K)), abs=1e-5)

    with open(os.path.join(out_dir, "metrics.json")) as f:
        saved = json.load(f)
    assert saved["top1"] == pytest.approx(result["top1"])
    assert saved["class_names"] == run.class_names
    assert saved["confusion_matrix"] == result["confusion_matrix"].tolist()
    for name in ("reliability_diagram", "confusion_matrix", "per_class",
                 "reliability_diagram_calibrated"):
        with open(os.path.join(out_dir, f"{name}.png"), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n", name

    text = report.format_report(result, run.class_names)
    assert f"{100 * result['top1']:.2f}%" in text and "bee" in text and "T = " in text

    # Evaluated again without plots (another checkpoint, say): the earlier PNGs would sit next to
    # the new metrics.json showing other numbers, so they are removed; other files are kept.
    open(os.path.join(out_dir, "notes.txt"), "w").close()
    evaluation.evaluate_run(run, "test", pipeline=ListPipeline(images, labels, 32),
                            out_dir=out_dir, plots=False)
    assert sorted(os.listdir(out_dir)) == ["metrics.json", "notes.txt"]


def test_calibrating_on_the_evaluated_split_is_refused(run):
    images, labels, _ = make_split(run, 20, seed=3)
    with pytest.raises(ValueError, match="held-out split"):
        evaluation.evaluate_run(run, "test", pipeline=ListPipeline(images, labels, 32),
                                calibrate=True,
                                calibration_pipeline=ListPipeline(images, labels, 32, "test"))


def test_report_json_is_valid_and_nan_becomes_null():
    out = report.to_jsonable({"a": float("nan"), "b": np.arange(3), "c": np.float32(0.5),
                              "d": {"e": np.int64(2)}})
    assert json.loads(json.dumps(out, allow_nan=False)) == {
        "a": None, "b": [0, 1, 2], "c": 0.5, "d": {"e": 2}}


def test_many_class_plots_render(tmp_path):
    rng = np.random.default_rng(0)
    k = 60
    logits = rng.normal(size=(400, k)).astype(np.float32) * 2
    labels = rng.integers(0, k, 400)
    m = evaluation.classification_metrics(logits, labels)
    paths = plots.write_all(m, [f"class{i}" for i in range(k)], str(tmp_path))
    for path in paths.values():
        img = plots_image_shape(path)
        assert img[0] > 100 and img[1] > 100
    assert "lowest-F1" in report.per_class_table(m)


def plots_image_shape(path):
    with Image.open(path) as im:
        return im.size


def _write_png(path, array):
    Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def digits_run():
    """A linear model on the bundled 8x8 gray digits config (built offline by jaxvision.data)."""
    config = ml_collections.ConfigDict({"data": data_lib.default_config()})
    config.data.name = "digits"
    model = Linear(num_classes=10)
    variables = model.init(jax.random.key(1), np.zeros((1, 8, 8, 1), np.float32))
    return types.SimpleNamespace(config=config, model=model, variables=variables, step=0,
                                 class_names=[f"digit{i}" for i in range(10)])


def test_predict_files_reports_bad_files_and_ranks_the_rest(digits_run, tmp_path):
    run = digits_run
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    arrays = [rng.integers(0, 256, (8, 8), dtype=np.uint8) for _ in range(3)]
    for i, a in enumerate(arrays):
        _write_png(folder / f"{i}.png", a)
    (folder / "notes.txt").write_text("not an image; skipped in folders")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    missing = str(tmp_path / "missing.png")

    results = evaluation.predict_files(run, [str(broken), str(folder), missing], top_k=3)
    assert [os.path.basename(r["file"]) for r in results] == [
        "broken.png", "0.png", "1.png", "2.png", "missing.png"]
    assert "error" in results[0] and "error" in results[-1]
    assert "missing.png" in results[-1]["error"]
    for r, a in zip(results[1:4], arrays, strict=True):
        image = data_lib.load_image(r["file"])
        np.testing.assert_array_equal(image[..., 0], a)  # results are in the files' order
        x = data_lib.preprocess_for_eval(run.config.data, image)
        p = ref.softmax(np.asarray(run.model.apply(run.variables, x[None])))[0]
        order = np.argsort(-p)[:3]
        assert [t["class"] for t in r["top_k"]] == [run.class_names[j] for j in order]
        np.testing.assert_allclose([t["prob"] for t in r["top_k"]], p[order], atol=1e-5)
    line = evaluation.format_prediction(results[1])
    assert line.startswith(results[1]["file"] + ": " + results[1]["top_k"][0]["class"] + " ")


def test_robustness_options_reach_evaluate_robustness(run):
    from jaxvision.robustness import Normalization

    images, labels, _ = make_split(run, 40, seed=2)
    result = evaluation.evaluate_run(
        run, "test", pipeline=ListPipeline(images, labels, 32),
        robustness={"attack": "fgsm", "eps": 0.5, "corruptions": (),
                    "normalization": Normalization(0.0, 1.0, (-10.0, 10.0))})
    rob = result["robustness"]
    assert rob["num_examples"] == 40
    assert rob["clean_top1"] == pytest.approx(result["top1"])
    assert rob["fgsm_top1"] < rob["clean_top1"]  # an attack on a linear model must hurt


def test_command_line_values_map_to_library_options():
    assert evaluation.robustness_options("none", corruptions=None) is None
    assert evaluation.robustness_options("pgd", 0.1, 5, "l2") == {
        "attack": "pgd", "eps": 0.1, "steps": 5, "norm": "l2", "corruptions": (),
        "severities": (1, 3, 5)}
    all_c = evaluation.robustness_options("none", corruptions=["all"], severities=["2"])
    assert "corruptions" not in all_c and all_c["attack"] is None and all_c["severities"] == (2,)
    assert evaluation.parse_checkpoint("best") == "best"
    assert evaluation.parse_checkpoint("1200") == 1200
    with pytest.raises(ValueError, match="'latest', 'best' or a step"):
        evaluation.parse_checkpoint("last")
