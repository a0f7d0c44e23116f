"""Class weights against hand computations and scikit-learn."""

import numpy as np
import pytest
from sklearn.utils.class_weight import compute_class_weight

from jaxvision.data import balance


def test_inverse_frequency_matches_sklearn_balanced():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 5)
    counts = balance.class_counts(labels, 3)
    want = compute_class_weight("balanced", classes=np.arange(3), y=labels)
    np.testing.assert_allclose(balance.weights_from_counts(counts, "inverse"), want, rtol=1e-6)


def test_effective_number_by_hand():
    counts = np.array([100, 10, 1])
    beta = 0.9
    eff = (1 - beta**counts) / (1 - beta)  # effective numbers: 9.99997, 6.5132, 1
    w = 1 / eff
    w = w / w.sum() * 3
    got = balance.weights_from_counts(counts, "effective", beta)
    np.testing.assert_allclose(got, w, rtol=1e-6)
    assert got[2] > got[1] > got[0]
    np.testing.assert_allclose(got.sum(), 3.0, rtol=1e-6)


def test_none_and_missing_class_and_bad_method():
    np.testing.assert_array_equal(balance.weights_from_counts([3, 0], "none"), [1, 1])
    w = balance.weights_from_counts([4, 0, 4], "inverse")
    np.testing.assert_allclose(w, [8 / 12, 0, 8 / 12])
    with pytest.raises(ValueError, match="class_weighting"):
        balance.weights_from_counts([1, 2], "sqrt")
