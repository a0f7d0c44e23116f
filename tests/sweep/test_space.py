"""--space parsing and sweep validation, against Optuna's own distributions and the recipe."""

import os

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from jaxvision import config as config_lib
from jaxvision.sweep import space, study

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "mnist5k_lenet.py")


def test_each_kind_is_the_optuna_distribution():
    assert space.parse_space("schedule.base_lr=loguniform(1e-4, 1e-1)") == (
        "schedule.base_lr", FloatDistribution(1e-4, 0.1, log=True))
    assert space.parse_space("data.mixup_alpha=uniform(0,0.4)") == (
        "data.mixup_alpha", FloatDistribution(0.0, 0.4))
    assert space.parse_space("batch_size=int(16,64)") == ("batch_size", IntDistribution(16, 64))
    assert space.parse_space("model.name=choice(resnet18, resnet34)") == (
        "model.name", CategoricalDistribution(["resnet18", "resnet34"]))
    # literals keep their type; bare words are strings
    assert space.parse_space("x=choice(1, 0.5, True, None, 'a b', lenet5)")[1].choices == (
        1, 0.5, True, None, "a b", "lenet5")


@pytest.mark.parametrize("spec, message", [
    ("schedule.base_lr", "expected KEY=KIND(ARGS)"),
    ("schedule.base_lr=[0.1,0.01]", "expected KEY=KIND(ARGS)"),
    ("schedule.base_lr=normal(0,1)", "unknown kind 'normal'"),
    ("schedule.base_lr=loguniform(0,0.1)", "loguniform needs 0 < low"),
    ("schedule.base_lr=uniform(0.1,0.01)", "low must be smaller than high"),
    ("schedule.base_lr=uniform(0.1)", "takes two numbers"),
    ("schedule.base_lr=uniform(a,1)", "'a' is not a number"),
    ("batch_size=int(16,64.5)", "whole numbers"),
    ("model.name=choice()", "one or more"),
    ("model.name=choice(a,,b)", "one or more"),
    ("model.name=choice(a,a)", "listed twice"),
])
def test_bad_specs_say_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        space.parse_space(spec)


def test_keys_once_and_at_least_one():
    with pytest.raises(ValueError, match="given twice"):
        space.parse_spaces(["a=uniform(0,1)", "a=int(1,2)"])
    with pytest.raises(ValueError, match="at least one --space"):
        space.parse_spaces([])


def test_grid_enumerates_choices_and_integers_and_refuses_continuous():
    s = space.parse_spaces(["a=choice(x,y)", "b=int(2,5)"])
    assert space.grid(s) == {"a": ["x", "y"], "b": [2, 3, 4, 5]}
    with pytest.raises(ValueError, match="continuous"):
        space.grid(space.parse_spaces(["lr=loguniform(1e-3,1e-1)"]))


def test_sampled_values_reach_the_config_exactly():
    """The flags a trial gets parse back (through config_flags, as train does) to the very value
    the sampler drew."""
    params = {"schedule.base_lr": 0.00012345678901234567, "optimizer.weight_decay": 3e-5,
              "batch_size": 48, "model.name": "alexnet", "progress_bar": False}
    cfg = config_lib.from_flags(CONFIG, space.override_args(params))
    got = {k: cfg[k.split(".")[0]][k.split(".")[1]] if "." in k else cfg[k] for k in params}
    assert got == params and type(got["batch_size"]) is int


@pytest.mark.parametrize("fixed, specs, metric, direction, message", [
    ([], ["schedule.base_lrr=loguniform(1e-4,1e-1)"], "top1", None,
     "Did you mean --config.schedule.base_lr"),
    (["--config.optimizer.weigth_decay=0"], ["schedule.base_lr=uniform(0.1,0.2)"], "top1", None,
     "Did you mean --config.optimizer.weight_decay"),
    ([], ["batch_size=uniform(16,64)"], "top1", None, "batch_size=16.0: invalid literal for int"),
    (["--config.batch_size=abc"], ["schedule.base_lr=uniform(0.1,0.2)"], "top1", None, "abc"),
    ([], ["schedule.base_lr=uniform(0.1,0.2)"], "accuracy", None, "not a validation metric"),
    ([], ["schedule.base_lr=uniform(0.1,0.2)"], "nll", "maximize", "contradicts --metric nll"),
    (["--config.data.eval_split="], ["schedule.base_lr=uniform(0.1,0.2)"], "top1", None,
     "no validation split"),
    # Values the key's type takes but training rejects (config.check): refused before any
    # trial, not after three failed trials.
    ([], ["optimizer.name=uniform(0,1)"], "top1", None, "optimizer.name='0.0' is not valid"),
    ([], ["optimizer.name=choice(adamw,adamm)"], "top1", None, "optimizer.name='adamm' is not valid"),
    ([], ["label_smoothing=uniform(0,1)"], "top1", None, "label_smoothing must be in"),
    ([], ["batch_size=int(0,64)"], "top1", None, "batch_size must be >= 1"),
    (["--config.schedule.name=cosin"], ["schedule.base_lr=uniform(0.1,0.2)"], "top1", None,
     "schedule.name='cosin' is not valid"),
])
def test_sweep_is_validated_before_any_trial(fixed, specs, metric, direction, message):
    with pytest.raises(ValueError, match=message):
        study.make_sweep(CONFIG, fixed, specs, metric, direction)


def test_direction_follows_the_metric():
    specs = ["schedule.base_lr=uniform(0.1,0.2)"]
    assert study.make_sweep(CONFIG, [], specs, "top1", None).direction == "maximize"
    assert study.make_sweep(CONFIG, [], specs, "val/nll", None).direction == "minimize"
    with pytest.raises(FileNotFoundError, match="not found"):
        study.make_sweep("no/such/recipe.py", [], specs, "top1", None)
