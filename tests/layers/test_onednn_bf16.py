"""jaxvision.layers.onednn_bf16: oneDNN's bf16 products run as bf16 or on float32 copies, as this
machine's measurement (stored once per CPU) or ``JAXVISION_ONEDNN_BF16`` says, and both forms give
the float32 products of the bf16 operands rounded once to bf16 (numpy's float32 matmul and XLA's
convolution are the references), with the same gradients."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxvision import user_cache
from jaxvision.layers import onednn_bf16 as ob
from jaxvision.layers import onednn_matmul
from jaxvision.layers.onednn_conv import onednn_conv
from tests.layers.onednn_testing import jaxpr_text, needs_onednn, one_device  # noqa: F401

pytestmark = pytest.mark.usefixtures("one_device")


@pytest.fixture
def fresh_choice(monkeypatch, tmp_path):
    """An empty cache directory and no remembered choice; both restored afterwards."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(ob.ENV_VAR, raising=False)
    ob._measured_choice.cache_clear()
    ob._made.clear()
    yield tmp_path
    ob._measured_choice.cache_clear()
    ob._made.clear()


def test_setting_overrides_the_measurement(monkeypatch, fresh_choice):
    monkeypatch.setattr(ob, "measure", lambda: pytest.fail("measured despite the setting"))
    monkeypatch.setenv(ob.ENV_VAR, "float32")
    assert ob.compute_dtype(jnp.bfloat16) == jnp.float32
    assert ob.compute_dtype(jnp.float32) == jnp.float32
    monkeypatch.setenv(ob.ENV_VAR, "Native")
    assert ob.compute_dtype(jnp.bfloat16) == jnp.bfloat16
    monkeypatch.setenv(ob.ENV_VAR, "fp32")
    with pytest.raises(ValueError, match="JAXVISION_ONEDNN_BF16='fp32' is not one of"):
        ob.choice()


def test_measured_once_per_machine_and_stored(monkeypatch, fresh_choice):
    calls = []

    def fake_measure():
        calls.append(1)
        return {"choice": "float32", "bf16_ms": 2.0, "float32_ms": 1.0}

    monkeypatch.setattr(ob, "measure", fake_measure)
    assert ob.choice() == "float32" and ob.choice() == "float32"
    path = fresh_choice / "jaxvision" / ob.FILE_NAME
    assert json.loads(path.read_text())[ob.cpu_key()]["choice"] == "float32"
    ob._measured_choice.cache_clear()  # a later process reads the file
    assert ob.choice() == "float32" and len(calls) == 1
    # A damaged file, or an entry from a different CPU only, is measured again and repaired.
    # So is an entry whose timings are not numbers (it used to break the log line), and a file
    # nested too deep to parse (RecursionError, not ValueError).
    damaged = ["{not json", json.dumps({"0123456789abcdef": {"choice": "native"}}), "[1]",
               json.dumps({ob.cpu_key(): {"choice": "fast"}}),
               json.dumps({ob.cpu_key(): {"choice": "native", "bf16_ms": "31", "float32_ms": 1}}),
               json.dumps({ob.cpu_key(): {"choice": "native", "bf16_ms": None}}),
               "[" * 100_000 + "]" * 100_000]
    # Times that are not finite positive numbers (NaN also made env.json invalid JSON; an int
    # too large for a float broke the log line).
    damaged += [f'{{"{ob.cpu_key()}": {{"choice": "native", "bf16_ms": {bad}, "float32_ms": 1}}}}'
                for bad in ("NaN", "-1", "0", "9" * 400, "true", "Infinity")]
    for text in damaged:
        path.write_text(text)
        ob._measured_choice.cache_clear()
        assert ob.choice() == "float32"
        assert json.loads(path.read_text())[ob.cpu_key()]["choice"] == "float32"
    assert len(calls) == 1 + len(damaged)
    # Stored as a plain open() would store it: readable by the other users of a shared cache.
    assert path.stat().st_mode & 0o777 == 0o666 & ~user_cache.umask()
    assert ob.record() == {"setting": "auto", "stored": fake_measure(), "effective": "float32"}
    monkeypatch.setenv(ob.ENV_VAR, " Native")  # the record says what the run used
    assert ob.record()["setting"] == ob.record()["effective"] == "native"


def test_failed_probe_keeps_bf16_for_this_process_only(monkeypatch, fresh_choice, caplog):
    # E.g. the matmul library failed to build while the convolution's loaded: a bf16 program
    # must still trace (as before the choice existed), say why, and store nothing.
    def broken():
        raise RuntimeError("oneDNN matmul unavailable: simulated")

    monkeypatch.setattr(ob, "measure", broken)
    with caplog.at_level("WARNING", logger=ob.__name__):
        assert ob.compute_dtype(jnp.bfloat16) == jnp.bfloat16
    assert "could not time oneDNN's bf16 matmul (RuntimeError: oneDNN matmul unavailable" \
        in caplog.text
    assert not (fresh_choice / "jaxvision" / ob.FILE_NAME).exists()


def test_unwritable_cache_keeps_the_choice_in_process(monkeypatch, fresh_choice):
    (fresh_choice / "jaxvision").write_text("a file where the directory should be")
    monkeypatch.setattr(ob, "measure",
                        lambda: {"choice": "native", "bf16_ms": 1.0, "float32_ms": 2.0})
    assert ob.choice() == "native"


@needs_onednn
def test_measurement_times_both_forms(fresh_choice):
    # Under a user's transfer guard too: the probe's own copies are explicit.
    with jax.transfer_guard("disallow"):
        m = ob.measure()
    assert m["bf16_ms"] > 0 and m["float32_ms"] > 0
    assert m["choice"] == ("native" if m["bf16_ms"] <= m["float32_ms"] else "float32")


def _bf16(rng, shape):
    return jnp.asarray(rng.normal(size=shape), jnp.bfloat16)


@needs_onednn
@pytest.mark.parametrize("setting", ["native", "float32"])
def test_both_forms_give_the_rounded_float32_product(monkeypatch, setting):
    monkeypatch.setenv(ob.ENV_VAR, setting)
    rng = np.random.default_rng(3)
    a, b, bias = _bf16(rng, (37, 300)), _bf16(rng, (300, 29)), _bf16(rng, (29,))
    ref = np.asarray(a, np.float32) @ np.asarray(b, np.float32)
    # Exact products, float32 sums in some order, one rounding: at most 1 bf16 ulp apart.
    np.testing.assert_allclose(np.asarray(onednn_matmul.onednn_matmul(a, b), np.float32), ref,
                               rtol=2 ** -7, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(onednn_matmul.onednn_linear(a, b, bias), np.float32),
        ref + np.asarray(bias, np.float32), rtol=2 ** -7, atol=1e-2)
    x, w = _bf16(rng, (2, 9, 10, 8)), _bf16(rng, (3, 3, 8, 16))
    conv_ref = lax.conv_general_dilated(
        x.astype(jnp.float32), w.astype(jnp.float32), (1, 1), [(1, 1), (1, 1)],
        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=lax.Precision.HIGHEST)
    got = onednn_conv(x, w, (1, 1), ((1, 1), (1, 1)))
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(got, np.float32), conv_ref, rtol=2 ** -7, atol=1e-5)
    # The handlers see the dtype the setting names; the program's inputs and outputs stay bf16.
    wide = "f32" if setting == "float32" else "bf16"
    text = jaxpr_text(lambda a, b: onednn_matmul.onednn_matmul(a, b), a, b)
    assert "ffi_call" in text and f"{wide}[37,29]" in text
    assert jax.eval_shape(onednn_matmul.onednn_matmul, a, b).dtype == jnp.bfloat16


@needs_onednn
def test_gradients_agree_between_the_forms(monkeypatch):
    rng = np.random.default_rng(4)
    x, w = _bf16(rng, (2, 8, 8, 6)), _bf16(rng, (3, 3, 6, 8))
    a, b = _bf16(rng, (16, 24)), _bf16(rng, (24, 12))

    def loss(x, w, a, b):
        y = onednn_conv(x, w, (2, 2), ((1, 1), (1, 1)))
        z = onednn_matmul.onednn_matmul(a, b)
        return jnp.sum(jnp.square(y.astype(jnp.float32))) + jnp.sum(jnp.sin(z.astype(jnp.float32)))

    grads = {}
    for setting in ("native", "float32"):
        monkeypatch.setenv(ob.ENV_VAR, setting)
        grads[setting] = jax.grad(lambda *p: loss(*p), argnums=(0, 1, 2, 3))(x, w, a, b)
    for g_native, g_wide in zip(grads["native"], grads["float32"], strict=True):
        assert g_native.dtype == g_wide.dtype == jnp.bfloat16
        np.testing.assert_allclose(np.asarray(g_native, np.float32),
                                   np.asarray(g_wide, np.float32), rtol=2e-2, atol=2e-2)
