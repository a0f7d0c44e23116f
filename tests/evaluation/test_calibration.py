"""Temperature scaling recovers a known temperature and never changes accuracy."""

import numpy as np
import pytest
import scipy.optimize

from jaxvision.evaluation import calibration
from tests.evaluation import references as ref


def calibrated_logits(n, k, seed):
    """Logits of a perfectly calibrated model: labels are drawn from softmax(logits)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 3.0
    labels = (ref.softmax(z).cumsum(1) > rng.random((n, 1))).argmax(1)
    return z.astype(np.float32), labels


def nll_np(logits, labels, t):
    p = ref.softmax(np.asarray(logits, np.float64) / t)
    return -np.mean(np.log(p[np.arange(len(labels)), labels]))


@pytest.mark.parametrize("true_t", [2.5, 0.5])
def test_recovers_known_temperature_without_changing_accuracy(true_t):
    z, labels = calibrated_logits(20000, 10, seed=int(true_t * 10))
    # The model's logits are the calibrated ones sharpened (T > 1) or flattened (T < 1) by true_t:
    # dividing them by T = true_t calibrates them again.
    logits = z * true_t
    result = calibration.temperature_scale(logits[:10000], labels[:10000], None,
                                           logits[10000:], labels[10000:])
    assert result.temperature == pytest.approx(true_t, rel=0.03)
    # Same minimizer as an independent float64 scipy search over log T.
    best = scipy.optimize.minimize_scalar(
        lambda lt: nll_np(logits[:10000], labels[:10000], np.exp(lt)), bounds=(-3, 3),
        method="bounded", options={"xatol": 1e-7})
    assert result.temperature == pytest.approx(np.exp(best.x), rel=1e-3)
    assert result.val_nll_after < result.val_nll_before
    assert result.val_nll_after == pytest.approx(best.fun, abs=1e-5)
    assert result.after["top1"] == result.before["top1"]
    np.testing.assert_array_equal(result.after["confusion_matrix"],
                                  result.before["confusion_matrix"])
    assert result.after["nll"] < result.before["nll"]
    assert result.after["ece"] < 0.02 < result.before["ece"]


def test_calibrated_model_keeps_temperature_near_one_and_mask_is_respected():
    z, labels = calibrated_logits(8000, 5, seed=1)
    # Padding rows with wildly wrong, confident logits must not move T.
    pad = np.zeros((500, 5), np.float32)
    pad[:, 0] = 40.0
    logits = np.concatenate([z, pad])
    y = np.concatenate([labels, np.full(500, 4)])
    mask = np.arange(len(y)) < len(z)
    t = calibration.fit_temperature(logits, y, mask)
    assert t == pytest.approx(1.0, abs=0.05)
    assert t == pytest.approx(calibration.fit_temperature(z, labels), rel=1e-4)


def test_no_examples_is_a_clear_error():
    with pytest.raises(ValueError, match="zero examples"):
        calibration.fit_temperature(np.zeros((3, 2)), np.zeros(3, int), np.zeros(3, bool))
