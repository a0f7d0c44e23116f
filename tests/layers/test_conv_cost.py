"""The cost model that picks per-tap matmuls or XLA's convolution for bf16 k x k convolutions:
its committed coefficients are the fit of its committed measurements, and it picks the measured
winner."""

import json

import numpy as np
import pytest

from jaxvision.layers import conv_cost


@pytest.fixture(autouse=True)
def _model_choice(monkeypatch):
    monkeypatch.delenv(conv_cost.ENV_VAR, raising=False)


def _rows():
    return conv_cost.load_table()["rows"]


def test_committed_coefficients_are_the_fit_of_the_committed_table():
    table = conv_cost.load_table()
    refit = conv_cost.fit(table["rows"])
    for p in conv_cost.PASSES:
        for low in conv_cost.LOWERINGS:
            np.testing.assert_allclose(refit[p][low], table["coef"][p][low], rtol=1e-6, atol=1e-9)


def test_model_picks_the_measured_winner_where_it_matters():
    # Over the table, the model's picks may lose to the measured winner only on shapes where the
    # two lowerings are close: its picks cost at most 10% over always picking the best.
    for p in conv_cost.PASSES:
        extra = best = 0.0
        for r in _rows():
            shape = conv_cost.ConvShape(*r["shape"])
            with conv_cost.forced_choice("auto"):
                pick = conv_cost.choose(p, shape)
            extra += r["ms"][p][pick] - min(r["ms"][p].values())
            best += min(r["ms"][p].values())
        assert extra <= 0.1 * best, (p, extra, best)


def test_model_gains_over_either_fixed_lowering():
    # The choice is worth having: over the table it beats both "always XLA" and "always taps".
    total = {"model": 0.0, "xla": 0.0, "taps": 0.0}
    for r in _rows():
        shape = conv_cost.ConvShape(*r["shape"])
        for p in conv_cost.PASSES:
            total["model"] += r["ms"][p][conv_cost.choose(p, shape)]
            total["xla"] += r["ms"][p]["xla"]
            total["taps"] += r["ms"][p]["taps"]
    assert total["model"] < min(total["xla"], total["taps"]), total


def test_user_table_takes_precedence_and_env_override(tmp_path, monkeypatch):
    table = dict(conv_cost.load_table())
    shape = conv_cost.ConvShape(*table["rows"][0]["shape"])
    # A user table in which per-tap matmuls cost nothing: the model then always picks them.
    table["coef"] = {p: {"xla": [0, 0, 0, 1.0], "taps": [0, 0, 0, 0.0]} for p in conv_cost.PASSES}
    (tmp_path / "jaxvision").mkdir()
    (tmp_path / "jaxvision" / conv_cost.TABLE_NAME).write_text(json.dumps(table))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    conv_cost.load_table.cache_clear()
    try:
        assert conv_cost.load_table()["path"].startswith(str(tmp_path))
        assert conv_cost.choose("forward", shape) == "taps"
        monkeypatch.setenv(conv_cost.ENV_VAR, "xla")
        assert conv_cost.choose("forward", shape) == "xla"
        monkeypatch.setenv(conv_cost.ENV_VAR, "fast")
        with pytest.raises(ValueError, match=conv_cost.ENV_VAR):
            conv_cost.choose("forward", shape)
    finally:
        conv_cost.load_table.cache_clear()
