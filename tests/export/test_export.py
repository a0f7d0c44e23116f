"""Export the default job's LeNet-5 in every format and run each with its own runtime.

Reference: ``jaxvision.evaluation.predict_files`` (what ``python -m jaxvision.predict`` prints)
on the same PNG files; the exported models get the files' pixels from ``data.load_image``.
"""

import os

import numpy as np
import pytest

from jaxvision import data, export
from jaxvision.evaluation import predict_files

pytestmark = pytest.mark.slow


def reference_probabilities(run, paths):
    """(N, K) probabilities of jaxvision.predict, rebuilt from its top-K lists."""
    k = len(run.class_names)
    results = predict_files(run, paths, top_k=k)
    index = {name: i for i, name in enumerate(run.class_names)}
    probs = np.zeros((len(paths), k))
    for row, r in zip(probs, results, strict=True):
        for entry in r["top_k"]:
            row[index[entry["class"]]] = entry["prob"]
    return probs


@pytest.fixture(scope="module")
def digits(lenet_run, test_digits):
    paths, labels = test_digits
    pixels = np.stack([data.load_image(p) for p in paths])
    return paths, labels, pixels, reference_probabilities(lenet_run, paths)


@pytest.fixture(scope="module")
def exported(lenet_run, tmp_path_factory):
    """format -> (path, summary), each exported once on first use."""
    folder = tmp_path_factory.mktemp("exported")
    cache = {}

    def get(fmt):
        if fmt not in cache:
            path = str(folder / {"saved_model": "lenet_sm", "stablehlo": "lenet.stablehlo",
                                 "tflite": "lenet.tflite", "tflite_int8": "lenet_int8.tflite"}[fmt])
            cache[fmt] = path, export.export_run(lenet_run, fmt, path)
        return cache[fmt]

    return get


@pytest.mark.parametrize("fmt", ["saved_model", "tflite", "stablehlo"])
def test_float_formats_equal_predict(fmt, exported, digits, lenet_run):
    paths, labels, pixels, ref = digits
    path, summary = exported(fmt)
    runner = export.load_exported(fmt, path)
    got = np.concatenate([runner(pixels[i:i + 128]) for i in range(0, len(pixels), 128)])
    assert got.shape == ref.shape == (500, 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5)
    assert np.mean(got.argmax(1) == labels) == np.mean(ref.argmax(1) == labels) > 0.9
    assert summary["bytes"] > 4 * 61_706  # holds LeNet-5's float32 parameters
    names = (export.read_labels(os.path.join(path, "assets", "labels.txt")) if fmt == "saved_model"
             else export.read_labels(summary["labels"]))
    assert names == lenet_run.class_names


@pytest.mark.parametrize("fmt", ["saved_model", "tflite", "stablehlo"])
def test_batch_dimension_is_polymorphic(fmt, exported, digits):
    _, _, pixels, ref = digits
    runner = export.load_exported(fmt, exported(fmt)[0])
    for n in (1, 3, 7):
        np.testing.assert_allclose(runner(pixels[:n]), ref[:n], rtol=0, atol=1e-5)


def test_saved_model_takes_any_image_size(exported, lenet_run, test_digits, tmp_path):
    from PIL import Image

    from jaxvision.data._tf import tf

    paths = []
    for i, p in enumerate(test_digits[0][:6]):  # 28x28 digits as 45x37 RGB images
        out = str(tmp_path / f"{i}.png")
        Image.open(p).convert("RGB").resize((37, 45), Image.BICUBIC).save(out)
        paths.append(out)
    ref = reference_probabilities(lenet_run, paths)
    pixels = np.stack([data.load_image(p) for p in paths])
    assert pixels.shape == (6, 45, 37, 3)
    model = tf.saved_model.load(exported("saved_model")[0])
    out = model.signatures["serving_default"](images=tf.constant(pixels))
    np.testing.assert_allclose(out["probabilities"].numpy(), ref, rtol=0, atol=1e-5)
    classes = [c.decode() for c in out["classes"].numpy()]
    assert classes == [lenet_run.class_names[i] for i in ref.argmax(1)]


def test_int8_is_full_integer_and_keeps_top1(exported, digits, lenet_run):
    paths, labels, pixels, ref = digits
    path, summary = exported("tflite_int8")
    runner = export.TFLiteRunner(path)
    got = np.concatenate([runner(pixels[i:i + 100]) for i in range(0, len(pixels), 100)])
    agreement = np.mean(got.argmax(1) == ref.argmax(1))
    assert agreement >= 0.99
    # Probabilities: uint8 with a ~1/256 step (TFLite's int8 SOFTMAX output scale).
    assert np.abs(got - ref).max() < 0.1
    acc = summary["accuracy"]  # what the command line prints, measured on the same test split
    assert acc["num_images"] == 500 and summary["calibration_images"] == 300
    assert acc["float_top1"] == pytest.approx(np.mean(ref.argmax(1) == labels), abs=1e-9)
    assert acc["int8_top1"] == pytest.approx(np.mean(got.argmax(1) == labels), abs=1e-9)
    assert acc["top1_drop"] == pytest.approx(acc["float_top1"] - acc["int8_top1"])
    interp = runner.interpreter
    assert interp.get_input_details()[0]["dtype"] == np.uint8
    assert interp.get_output_details()[0]["dtype"] == np.uint8
    dtypes = {t["index"]: t["dtype"] for t in interp.get_tensor_details()}
    heavy = [op for op in interp._get_ops_details()
             if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED", "SOFTMAX")]
    assert {op["op_name"] for op in heavy} == {"CONV_2D", "FULLY_CONNECTED", "SOFTMAX"}
    for op in heavy:  # weights and activations int8 (biases int32)
        assert dtypes[op["inputs"][0]] == np.int8 and dtypes[op["outputs"][0]] == np.int8, op
    assert summary["bytes"] < exported("tflite")[1]["bytes"] / 2


def test_export_refuses_an_existing_output_and_a_bad_format(lenet_run, tmp_path):
    target = tmp_path / "taken.tflite"
    target.write_bytes(b"x")
    with pytest.raises(ValueError, match="already exists"):
        export.export_run(lenet_run, "tflite", str(target))
    with pytest.raises(ValueError, match="unknown format 'onnx'"):
        export.export_run(lenet_run, "onnx", str(tmp_path / "m.onnx"))
    assert target.read_bytes() == b"x"
