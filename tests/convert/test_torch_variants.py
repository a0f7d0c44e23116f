"""Conventions a PyTorch state dict cannot state, on the committed reference fixtures (no torch):
timm's TF ports selected from the file name or from flags of ``python -m jaxvision.convert``,
timm's weight standardization for the ViT hybrids, and converted arrays that never alias the
source."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxvision.convert import convert
from jaxvision.convert.torch import variant_from_name
from tests.convert.test_parity_fixtures import TOLERANCE, load_fixture, relative_error

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def _fixture(name):
    return load_fixture(os.path.join(FIXTURES, f"{name}.npz"))


def _logits(converted, x_nchw):
    model = converted.create_model()
    return np.asarray(jax.jit(model.apply)(converted.variables, np.transpose(x_nchw, (0, 2, 3, 1))))


def test_converted_arrays_do_not_alias_the_source():
    state, x, want, meta = _fixture("resnet_basic")
    converted = convert("torch", state, meta["model"], **meta["overrides"])
    for v in state.values():  # e.g. an optimizer step on the source model after converting
        v += 1.0
    assert relative_error(_logits(converted, x), want) <= TOLERANCE


def test_variant_from_file_name():
    tf = {"padding": "SAME", "bn_epsilon": 1e-3}
    assert variant_from_name("/ckpt/tf_efficientnet_b0.ns_jft_in1k.safetensors") == tf
    assert variant_from_name("timm-tf_efficientnet_b3.pth") == tf
    ap = variant_from_name("tf_efficientnet_b0.ap_in1k.safetensors")
    assert ap["mean"] == (0.5, 0.5, 0.5) and ap["std"] == (0.5, 0.5, 0.5)
    assert variant_from_name("efficientnet_b0.ra_in1k.safetensors") == {}
    assert variant_from_name("my_tf_notes/efficientnet_b0.pth") == {}


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv):
    """``python -m jaxvision.convert ARGV`` as a user runs it -> (exit status, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "jaxvision.convert", *argv], capture_output=True,
                          text=True, cwd=REPO, timeout=600, env={**os.environ, "PYTHONPATH": REPO})
    return proc.returncode, proc.stderr


def _write_safetensors(state, path):
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(path))
    return str(path)


def _cli_logits(tmp_path, file_name, extra):
    from jaxvision.training.checkpoints import load_run

    state, x, want, meta = _fixture("tf_efficientnet_timm")
    src = _write_safetensors(state, tmp_path / file_name)
    out = str(tmp_path / f"run_{len(os.listdir(tmp_path))}")
    tiny = [f"--override={k}={v}" for k, v in meta["overrides"].items()
            if k in ("width_coefficient", "depth_coefficient")]
    code, err = main(["--source", "torch", "--model", "efficientnet_b0", "--input", src,
                      "--output", out, *tiny, *extra])
    assert code == 0, err[-2000:]
    run = load_run(out)
    # One compiled program (op by op, each convolution would be compiled on its own).
    got = jax.jit(lambda v, im: run.model.apply(v, im, train=False))(
        run.variables, np.transpose(x, (0, 2, 3, 1)))
    return relative_error(got, want), run


def test_cli_selects_timm_tf_port_by_file_name_or_flags(tmp_path):
    err, run = _cli_logits(tmp_path, "tf_efficientnet_b0.in1k.safetensors", [])
    assert err <= TOLERANCE
    assert run.config.model.padding == "SAME" and run.config.model.bn_epsilon == pytest.approx(1e-3)
    err, _ = _cli_logits(tmp_path, "weights.safetensors", ["--padding", "SAME", "--bn_epsilon", "1e-3"])
    assert err <= TOLERANCE
    err, _ = _cli_logits(tmp_path, "weights2.safetensors", [])  # PyTorch conventions: wrong here
    assert err > 20 * TOLERANCE  # measured 1.3e-3: two orders above the parity figures (~1e-7)


@pytest.mark.parametrize("flags, message", [
    (["--mean", "0.5,0.5"], "--mean"),
    (["--std", "0.2,0,0.2"], "--std"),
    (["--bn_epsilon", "-1"], "--bn_epsilon"),
    (["--override", "width"], "--override"),
    (["--override", "no_such_option=1"], "no_such_option"),
])
def test_cli_refuses_bad_options_in_one_line(tmp_path, flags, message):
    state, *_ = _fixture("resnet_basic")
    src = _write_safetensors(state, tmp_path / "r.safetensors")
    code, err = main(["--source", "torch", "--model", "resnet18", "--input", src, "--output",
                      str(tmp_path / "out"), *flags])
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and message in errors[0], err[-2000:]
    assert "Traceback" not in err


def test_timm_hybrid_uses_timm_weight_standardization():
    state, x, want, meta = _fixture("hybrid_r26_timm")
    tiny = {k: v for k, v in meta["overrides"].items() if k != "weight_standardization"}
    converted = convert("torch", state, meta["model"], **tiny)
    assert converted.model_overrides["weight_standardization"] == "timm"  # recorded for the run
    assert relative_error(_logits(converted, x), want) <= TOLERANCE
    assert convert("torch", state, meta["model"], **tiny, weight_standardization="big_vision"
                   ).model_overrides["weight_standardization"] == "big_vision"  # caller's wins


@pytest.mark.parametrize("eps_in_sqrt, eps", [(False, 1e-5), (True, 1e-8)])
def test_weight_standardization_forms(eps_in_sqrt, eps):
    """big_vision: (w - mean) / (std + eps); timm: (w - mean) / sqrt(var + eps) (numpy here).
    On weights with small spread (std 1e-4) the two differ by far more than rounding."""
    from jaxvision.layers.conv import weight_standardize

    w = np.random.default_rng(0).normal(0.3, 1e-4, size=(3, 3, 4, 5)).astype(np.float32)
    c = w.astype(np.float64) - w.mean(axis=(0, 1, 2), keepdims=True, dtype=np.float64)
    var = (c**2).mean(axis=(0, 1, 2), keepdims=True)
    want = c / np.sqrt(var + eps) if eps_in_sqrt else c / (np.sqrt(var) + eps)
    got = np.asarray(weight_standardize(w, eps, eps_in_sqrt=eps_in_sqrt))
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3)
    other = np.asarray(weight_standardize(w, 1e-5 if eps_in_sqrt else 1e-8,
                                          eps_in_sqrt=not eps_in_sqrt))
    assert np.abs(other - want).max() > 0.05
