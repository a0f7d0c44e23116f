"""Reference parity without torch: every fixture of ``scripts/make_parity_fixtures.py`` (a tiny
torchvision/timm model's state dict, an input batch and the reference's eval-mode logits) is
converted with ``jaxvision.convert`` and must give the same logits.

Tolerance: relative error (Frobenius norm of the difference over that of the reference) <= 1e-5,
the float32 noise floor of two implementations summing in different orders (measured 1e-7 to
1e-6 per fixture; a wrong epsilon or padding convention gives 1e-4 and more), and the same
top-1 class for both images.
"""

import glob
import json
import os

import jax
import numpy as np
import pytest

from jaxvision.convert import convert

FIXTURES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "fixtures", "*.npz")))
TOLERANCE = 1e-5


def load_fixture(path):
    with np.load(path) as z:
        state = {k[len("state/"):]: z[k] for k in z.files if k.startswith("state/")}
        return state, z["input"], z["logits"], json.loads(str(z["meta"]))


def relative_error(got, want) -> float:
    return float(np.linalg.norm(np.asarray(got, np.float64) - want) / np.linalg.norm(want))


def test_fixtures_exist():
    assert len(FIXTURES) >= 15, "run scripts/make_parity_fixtures.py where torch is installed"


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: os.path.basename(p)[:-4])
def test_converted_logits_equal_the_reference(path):
    state, x_nchw, want, meta = load_fixture(path)
    converted = convert("torch", state, meta["model"], **meta["overrides"])
    assert converted.num_classes == meta["num_classes"]
    model = converted.create_model()
    got = jax.jit(model.apply)(converted.variables, np.transpose(x_nchw, (0, 2, 3, 1)))
    assert got.shape == want.shape
    err = relative_error(got, want)
    print(f"{os.path.basename(path)} ({meta['source']} {meta['model']}): relative error {err:.2e}")
    assert err <= TOLERANCE, f"relative error {err:.2e} > {TOLERANCE:.0e}"
    np.testing.assert_array_equal(np.argmax(got, -1), np.argmax(want, -1))
