"""jaxvision.env_settings: every JAXVISION_* choice and switch is read one way (case and spaces
ignored, empty = default) and a typo is refused naming the variable, the value and the choices
-- never silently read as one side of a switch."""

import os
import subprocess
import sys

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


@pytest.mark.parametrize("raw,want", [(" 0 ", False), ("FALSE", False), ("none", False),
                                      ("", False), ("/tmp/x/../cache", "/tmp/cache")])
def test_cache_folder_setting(monkeypatch, raw, want):
    monkeypatch.setenv(NAME, raw)
    assert env_settings.folder_or_off(NAME) == want


def test_cache_folder_expands_home_and_refuses_relative_paths(monkeypatch):
    monkeypatch.setenv(NAME, "~/jaxcache")
    assert env_settings.folder_or_off(NAME) == os.path.expanduser("~/jaxcache")
    monkeypatch.delenv(NAME)
    assert env_settings.folder_or_off(NAME) is None
    for typo in ("Disabled", "of", "cache"):  # 'of' used to make a folder ./of as the cache
        monkeypatch.setenv(NAME, typo)
        with pytest.raises(ValueError, match=rf"^{NAME}='{typo}' is not an absolute folder"):
            env_settings.folder_or_off(NAME)


@pytest.mark.parametrize("raw,want", [(" 0 ", None), ("None", None), ("", False),
                                      ("1000", 1000), (" 89478485 ", 89478485)])
def test_pixel_limit_setting(monkeypatch, raw, want):
    monkeypatch.setenv(NAME, raw)
    assert env_settings.pixel_limit(NAME) == want


@pytest.mark.parametrize("typo", ["-1", "abc", "1e6", "10 000"])
def test_pixel_limit_refuses_what_is_no_count(monkeypatch, typo):
    monkeypatch.setenv(NAME, typo)
    with pytest.raises(ValueError, match=rf"^{NAME}=.* is not a positive number of pixels"):
        env_settings.pixel_limit(NAME)


def test_a_long_bad_value_is_shortened(monkeypatch):
    monkeypatch.setenv("JAXVISION_CONV_IMPL", "x" * 100_000)
    with pytest.raises(ValueError) as e:
        env_settings.choice("JAXVISION_CONV_IMPL")
    assert len(str(e.value)) < 200 and "xxx..." in str(e.value)


@pytest.mark.parametrize("name,value", [
    ("JAXVISION_ONEDNN", "of"), ("JAXVISION_CONV_IMPL", "fast"),
    ("JAXVISION_ONEDNN_BF16", "bogus"), ("JAXVISION_TAP_CONV", "TAPS!"),
    ("JAXVISION_COMPILATION_CACHE", "0x"), ("JAXVISION_MAX_IMAGE_PIXELS", "-1")])
def test_check_all_reads_every_setting(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"^{name}="):
        env_settings.check_all()


def test_check_all_warns_of_a_misspelt_name(monkeypatch, caplog):
    monkeypatch.setenv("JAXVISION_CONV_IMP", "xla")
    with caplog.at_level("WARNING", logger=env_settings.__name__):
        env_settings.check_all()
    assert "JAXVISION_CONV_IMP is not a jaxvision setting and is ignored (did you mean " \
        "JAXVISION_CONV_IMPL?)" in caplog.text


def test_commands_refuse_a_bad_setting_before_any_work(tmp_path):
    # A float32 predict never reads the bf16 setting; the typo is refused up front anyway.
    env = dict(os.environ, JAXVISION_ONEDNN_BF16="bogus", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "jaxvision.predict", "--workdir",
                           str(tmp_path), "x.png"], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: JAXVISION_ONEDNN_BF16='bogus' is not one of ('auto', 'native', 'float32'); "
        "unset it or pick one"]
