"""Per-class bars are scaled to the data: a 94-100% spread fills the axis."""

import numpy as np
import pytest

from jaxvision.evaluation import plots


@pytest.mark.parametrize("values, lo, hi", [
    ([0.94, 0.97, 1.0], 0.90, 1.02),   # margin max(0.02, 0.006) -> [0.92, 1.02]; floor to 0.05
    ([0.1, 0.5, 0.9], 0.0, 0.98),      # margin 0.08: low end clipped at 0
    ([], 0.0, 1.05),
])
def test_score_axis_limits(values, lo, hi):
    got = plots.score_axis_limits(values)
    assert got == pytest.approx((lo, min(1.05, hi)), abs=1e-9)
    if values:
        assert got[0] <= min(values) and got[1] >= max(values)


def test_per_class_bars_use_the_scaled_axis(tmp_path, monkeypatch):
    seen = {}
    original = plots._save

    def spy(fig, path):
        seen["ylim"] = fig.axes[0].get_ylim()
        seen["title"] = fig.axes[0].get_title()
        return original(fig, path)

    monkeypatch.setattr(plots, "_save", spy)
    m = {"precision": np.array([0.96, 1.0]), "recall": np.array([1.0, 0.95]),
         "f1": np.array([0.98, 0.974]), "support": np.array([50, 50])}
    plots.per_class_bars(m, ["a", "b"], str(tmp_path / "bars.png"), title="test")
    assert seen["ylim"] == pytest.approx(plots.score_axis_limits([0.95, 1.0]))
    assert seen["ylim"][0] >= 0.9 and "test" in seen["title"]
