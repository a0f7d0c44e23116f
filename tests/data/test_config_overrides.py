"""Every config key, of the base config and of every recipe, can be set from the command line
through the real flag parser (ml_collections config_flags), keys whose default is None included."""

import glob
import importlib.util
import os
import sys
from unittest import mock

import pytest
from absl import flags
from ml_collections import config_flags
from ml_collections.config_flags import config_path

from jaxvision import config as config_lib
from jaxvision import data

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPES = sorted(glob.glob(os.path.join(REPO, "configs", "*.py")))


def _recipe(path):
    spec = importlib.util.spec_from_file_location("recipe_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _parse(cfg, argv):
    """The config after the real flag parser read `argv` (config_flags finds the override flags
    in sys.argv when the config flag is defined, as in a command's main module)."""
    values = flags.FlagValues()
    with mock.patch.object(sys, "argv", argv):
        config_flags.DEFINE_config_dict("config", cfg, flag_values=values)
        values(argv)
    return values.config


def _new_value(field_type, current):
    """(command-line text, the value it must give) for a key of this type, != current."""
    if field_type is bool:
        return ("false", False) if current else ("true", True)
    if field_type is int:
        value = 7 if current != 7 else 8
        return str(value), value
    if field_type is float:
        value = 0.25 if current != 0.25 else 0.5
        return str(value), value
    if field_type is str:
        return "/some/dir", "/some/dir"
    if field_type is tuple:
        return "(1, 2)", (1, 2)
    if field_type is object:  # untyped placeholder: any Python literal, else a string
        return "(0.5, 0.25)", (0.5, 0.25)
    raise AssertionError(f"type {field_type} cannot be set from the command line")


def _override_every_key(cfg):
    keys = config_lib.all_keys(cfg)
    argv, want = ["prog"], {}
    for key in keys:
        field_type = config_path.get_type(key, cfg)
        text, value = _new_value(field_type, config_path.get_value(key, cfg))
        argv.append(f"--config.{key}={text}")
        want[key] = value
    got = _parse(cfg, argv)
    for key, value in want.items():
        assert config_path.get_value(key, got) == value, key
    return keys


@pytest.mark.parametrize("recipe", [os.path.basename(p) for p in RECIPES])
def test_every_key_of_every_recipe_is_settable(recipe):
    cfg = _recipe(os.path.join(REPO, "configs", recipe))
    keys = _override_every_key(cfg)
    assert "data.data_dir" in keys and "data.mean" in keys


def test_base_config_keys_including_none_defaults():
    cfg = config_lib.lock(config_lib.base_config())
    nones = [k for k in config_lib.all_keys(cfg) if config_path.get_value(k, cfg) is None]
    _override_every_key(cfg)
    # the keys the issue names: data_dir, paths, optional numbers
    assert {"data.data_dir", "data.image_size", "data.mean", "data.pad_pixels",
            "data.eval_crop_fraction", "init_from", "total_steps", "epochs"} <= set(nones)


def test_data_placeholders_take_the_documented_values():
    got = _parse(data.default_config(), [
        "prog", "--config.mean=none", "--config.std=(0.5,)", "--config.image_size=64",
        "--config.alpha_background=#808080", "--config.data_dir=/x"])
    assert (got.mean, got.std, got.image_size, got.alpha_background, got.data_dir) == (
        "none", (0.5,), 64, "#808080", "/x")
    with pytest.raises(flags.IllegalFlagValueError):  # a typed placeholder refuses a wrong type
        _parse(data.default_config(), ["prog", "--config.image_size=big"])


def test_lock_makes_plain_none_keys_settable():
    cfg = config_lib.base_config()
    with cfg.unlocked():
        cfg.model.drop_rate = None  # a recipe's own optional key
    config_lib.lock(cfg)
    got = _parse(cfg, ["prog", "--config.model.drop_rate=0.1", "--config.init_from=/runs/a"])
    assert got.model.drop_rate == 0.1 and got.init_from == "/runs/a"
