"""Exact trainable-parameter counts ('params' collection, 1000 classes unless noted) of every
registered CNN, counted abstractly (jax.eval_shape: nothing is allocated)."""

import dataclasses
import json
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from jaxvision import models
from jaxvision.models.efficientnet import EFFICIENTNET_PARAMS, efficientnet, round_filters
from jaxvision.models.mobilenet_v2 import make_divisible

CNN_FAMILIES = ("lenet", "alexnet", "vgg", "googlenet", "resnet", "densenet", "mobilenet_v2", "efficientnet")

# shared/reference/param_counts.json (the project's reference file; copied so the suite runs on a
# fresh checkout; test_reference_file_agrees checks the copy when the file is present).
REFERENCE = {
    "lenet5": 61706,
    "alexnet": 61100840,
    "vgg16": 138357544,
    "googlenet": 6624904,
    "resnet18": 11689512,
    "resnet50": 25557032,
    "densenet121": 7978856,
    "mobilenet_v2": 3504872,
    "efficientnet_b0": 5288548,
    "efficientnet_b1": 7794184,
    "efficientnet_b4": 19341616,
    "efficientnet_b7": 66347960,
}

# Models not in the reference file: torchvision's published weight metadata
# (``Weights.meta["num_params"]`` of the IMAGENET1K_V1 weights), i.e.
#   torchvision/models/resnet.py        ResNet34/101/152_Weights
#   torchvision/models/vgg.py           VGG11/13/16/19(_BN)_Weights  (BN variants keep the conv bias)
#   torchvision/models/efficientnet.py  EfficientNet_B2/B3/B5/B6_Weights (ported from the official
#                                       TF checkpoints, same architecture as the official code)
EXTRA = {
    "resnet34": 21797672,
    "resnet101": 44549160,
    "resnet152": 60192808,
    "vgg11": 132863336,
    "vgg11_bn": 132868840,
    "vgg13": 133047848,
    "vgg13_bn": 133053736,
    "vgg16_bn": 138365992,
    "vgg19": 143667240,
    "vgg19_bn": 143678248,
    "efficientnet_b2": 9109994,
    "efficientnet_b3": 12233232,
    "efficientnet_b5": 30389784,
    "efficientnet_b6": 43040704,
}
EXPECTED = {**REFERENCE, **EXTRA}
CNN_MODELS = sorted(n for f in CNN_FAMILIES for n in models.list_models(f))

# pre-logit feature width
FEATURES = {
    "lenet5": 84, "alexnet": 4096, "googlenet": 1024, "densenet121": 1024, "mobilenet_v2": 1280,
    "resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048, "resnet152": 2048,
    **{f"vgg{d}{s}": 4096 for d in (11, 13, 16, 19) for s in ("", "_bn")},
    **{f"efficientnet_b{i}": w for i, w in enumerate((1280, 1280, 1408, 1536, 1792, 2048, 2304, 2560))},
}
# smallest resolution each family's downsampling and fixed-size layers allow
SMALL_RES = {"lenet": 32, "alexnet": 64}

_REF_FILE = pathlib.Path(__file__).resolve().parents[3] / "shared" / "reference" / "param_counts.json"


def _params(name, num_classes=None, **overrides):
    model = models.create(name, num_classes=num_classes, **overrides)
    return models.abstract_variables(model, models.input_shape(name))["params"]


def test_every_cnn_is_counted():
    assert set(CNN_MODELS) == set(EXPECTED), "every registered CNN needs an expected parameter count"


@pytest.mark.skipif(not _REF_FILE.exists(), reason="shared reference file not present")
def test_reference_file_agrees():
    ref = json.loads(_REF_FILE.read_text())
    cnn_in_file = {k: v["params"] for k, v in ref.items() if k in CNN_MODELS}
    assert cnn_in_file == REFERENCE


@pytest.mark.parametrize("name", CNN_MODELS)
def test_param_count_exact(name):
    # counts do not depend on the resolution, so trace at a small one (one init + one apply trace)
    shape = models.input_shape(name, SMALL_RES.get(models.get_spec(name).family, 32), batch=2)
    variables = models.abstract_variables(models.create(name), shape)
    params = variables["params"]
    assert models.count_params(params) == EXPECTED[name]
    # the classifier is a Dense named 'head' at the top level; num_classes=0 removes just it and
    # the model then returns the pre-logit features
    head = params["head"]
    d, k = head["kernel"].shape
    assert k == models.get_spec(name).num_classes
    body = {key: v for key, v in params.items() if key != "head"}
    assert models.count_params(body) == EXPECTED[name] - d * k - k
    features = jax.eval_shape(models.create(name, num_classes=0).apply, {**variables, "params": body},
                              jax.ShapeDtypeStruct(shape, jnp.float32))
    assert features.shape == (2, FEATURES[name]) == (2, d)


def test_efficientnet_compound_scaling_function():
    # B0..B7 are points of the one public function
    for name, (w, d, r, p) in EFFICIENTNET_PARAMS.items():
        m, made = efficientnet(w, d, r, p), models.create(name)
        fields = [f.name for f in dataclasses.fields(m) if f.name not in ("parent", "name")]
        assert type(m).__name__ == type(made).__name__  # create() adds the input check
        assert {f: getattr(m, f) for f in fields} == {f: getattr(made, f) for f in fields}
    # official channel rounding (divisor 8): head conv widths of B0..B7
    assert [round_filters(1280, w) for w, *_ in EFFICIENTNET_PARAMS.values()] == [
        1280, 1280, 1408, 1536, 1792, 2048, 2304, 2560]
    assert [round_filters(32, w) for w, *_ in EFFICIENTNET_PARAMS.values()] == [32, 32, 32, 40, 48, 48, 56, 64]
    # repeat rounding is ceil: B7 has 55 blocks, B1 23 (B0 16)
    assert sum(s.repeats for s in models.create("efficientnet_b7").stages) == 55
    assert sum(s.repeats for s in models.create("efficientnet_b1").stages) == 23
    m = models.create("efficientnet_b3")
    assert (m.resolution, m.drop_rate, m.bn_momentum, m.bn_epsilon, m.padding) == (300, 0.3, 0.99, 1e-3, "SAME")
    # a custom phi builds and counts
    custom = efficientnet(1.1**0.5, 1.2**0.5, 240, 0.2, num_classes=10)
    assert models.count_params(models.abstract_variables(custom, (1, 240, 240, 3))["params"]) > 0


def test_efficientnet_drop_connect_grows_linearly_to_0_2():
    rates = []

    def record(next_fun, args, kwargs, context):
        if type(context.module).__name__ == "DropPath" and context.method_name == "__call__":
            rates.append(context.module.rate)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        models.abstract_variables(models.create("efficientnet_b0"), (1, 64, 64, 3))
    assert len(rates) == 9  # DropPath only on the blocks with a residual
    model = models.create("efficientnet_b0")
    total = sum(s.repeats for s in model.stages)
    assert total == 16
    # residual blocks of B0: indices 2, 4, 6, 7, 9, 10, 12, 13, 14 of 0..15
    assert rates == pytest.approx([0.2 * i / 16 for i in (2, 4, 6, 7, 9, 10, 12, 13, 14)])


def test_mobilenet_v2_width_multiplier():
    p = _params("mobilenet_v2", width_multiplier=0.5)
    assert p["stem"]["conv"]["kernel"].shape[-1] == make_divisible(32 * 0.5) == 16
    assert p["head_conv"]["conv"]["kernel"].shape[-1] == 1280  # last conv keeps 1280 when width < 1
    p = _params("mobilenet_v2", width_multiplier=1.4)
    assert p["head_conv"]["conv"]["kernel"].shape[-1] == make_divisible(1280 * 1.4) == 1792
    with pytest.raises(ValueError, match="width_multiplier"):
        models.create("mobilenet_v2", width_multiplier=0)


def test_batch_stats_are_not_parameters():
    variables = models.abstract_variables(models.create("resnet18"), (1, 224, 224, 3))
    n_stats = models.count_params(variables["batch_stats"])
    # mean and var of ResNet-18's 4800 BatchNorm channels: 64 (stem) + 4 * 64 + (4 + 1) * 128
    # + (4 + 1) * 256 + (4 + 1) * 512 (two convs per block, one projection per later stage)
    assert n_stats == 2 * 4800
    assert models.count_params(variables["params"]) == EXPECTED["resnet18"]
