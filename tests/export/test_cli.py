"""``python -m jaxvision.export``: one JSON document on stdout; bad input -> one error line, exit 2."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def run_export(*args):
    return subprocess.run([sys.executable, "-m", "jaxvision.export", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=300)


def error_lines(proc):
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def test_stablehlo_json_and_runs(lenet_workdir, lenet_run, test_digits, tmp_path):
    from jax import export as jax_export

    from jaxvision import data
    from tests.export.test_export import reference_probabilities

    out = str(tmp_path / "lenet.stablehlo")
    proc = run_export(f"--workdir={lenet_workdir}", "--format=stablehlo", f"--output={out}",
                      "--checkpoint=best", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["format"] == "stablehlo" and summary["bytes"] == os.path.getsize(out)
    assert summary["input"] == "uint8 (N, 28, 28, 3), any N"
    exported = jax_export.deserialize(bytearray(open(out, "rb").read()))
    assert {"cpu", "cuda"} <= set(exported.platforms)
    paths = test_digits[0][:16]
    got = np.asarray(exported.call(np.stack([data.load_image(p) for p in paths])))
    np.testing.assert_allclose(got, reference_probabilities(lenet_run, paths), atol=1e-5)


@pytest.mark.parametrize("args, message", [
    (["--format=onnx"], "--format='onnx' is not one of"),
    (["--format=tflite", "--checkpoint=7"], "No checkpoint for step 7"),
])
def test_bad_input_is_one_error_line(lenet_workdir, tmp_path, args, message):
    proc = run_export(f"--workdir={lenet_workdir}", f"--output={tmp_path / 'm.tflite'}", *args)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(error_lines(proc)) == 1 and message in error_lines(proc)[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not os.path.exists(tmp_path / "m.tflite")
