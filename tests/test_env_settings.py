"""jaxvision.env_settings: every JAXVISION_* choice and switch is read one way (case and spaces
ignored, empty = default) and a typo is refused naming the variable, the value and the choices
-- never silently read as one side of a switch."""

import pytest

from jaxvision import env_settings
from jaxvision.layers import lowering, onednn_bf16, onednn_build

NAME = "JAXVISION_TEST_SETTING"


@pytest.mark.parametrize("raw,want", [(None, "b"), ("", "b"), ("  ", "b"), ("a", "a"),
                                      (" A ", "a"), ("C", "c")])
def test_choice_normalizes(monkeypatch, raw, want):
    if raw is None:
        monkeypatch.delenv(NAME, raising=False)
    else:
        monkeypatch.setenv(NAME, raw)
    assert env_settings.choice(NAME, ("a", "b", "c"), "b") == want


@pytest.mark.parametrize("raw,want", [("1", True), ("ON", True), (" yes", True), ("true", True),
                                      ("0", False), ("Off", False), ("no", False),
                                      ("FALSE", False), ("", True)])
def test_switch_values(monkeypatch, raw, want):
    monkeypatch.setenv(NAME, raw)
    assert env_settings.switch(NAME, default=True) is want


@pytest.mark.parametrize("name,read", [
    ("JAXVISION_ONEDNN", onednn_build.switched_off),
    ("JAXVISION_CONV_IMPL", lowering.conv_impl),
    ("JAXVISION_ONEDNN_BF16", onednn_bf16.choice),
])
@pytest.mark.parametrize("typo", ["of", "2", "fp32", "onedn"])
def test_every_setting_refuses_a_typo(monkeypatch, name, read, typo):
    # 'of' used to switch oneDNN *on* silently (only 0/false/no/off were read).
    monkeypatch.setenv(name, typo)
    with pytest.raises(ValueError, match=rf"^{name}='{typo}' is not one of \(.*\); unset it"):
        read()


def test_conv_impl_takes_any_case(monkeypatch):
    monkeypatch.setenv("JAXVISION_CONV_IMPL", " XLA ")
    assert lowering.conv_impl() == "xla"
