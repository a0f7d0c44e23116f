"""Every registered CNN runs a real forward pass; dtype policy; BatchNorm train/eval in a model;
cross-device BatchNorm; pre-logit features; override errors.

Compile time dominates on CPU, so forward passes use batch 1, the smallest sensible resolution,
cheaply filled weights (the init path is covered by the abstract counts and the tests below) and
XLA's lowest backend optimization level.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxvision import models

CNN_FAMILIES = ("lenet", "alexnet", "vgg", "googlenet", "resnet", "densenet", "mobilenet_v2", "efficientnet")
CNN_MODELS = sorted(n for f in CNN_FAMILIES for n in models.list_models(f))
# smallest resolution each family's downsampling and fixed-size layers allow
SMALL_RES = {"lenet": 32, "alexnet": 64}
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _small_shape(name, batch=1):
    return models.input_shape(name, SMALL_RES.get(models.get_spec(name).family, 32), batch)


def filled_variables(model, shape):
    """Variables with the right tree and shapes, filled without running init: kernels from a
    fixed normal pattern scaled by 1/sqrt(fan_in), norms at identity (scale 1, bias 0, running
    mean 0, var 1)."""
    base = np.random.default_rng(0).standard_normal(4099).astype(np.float32)

    def fill(path, a):
        key = path[-1].key
        if key in ("scale", "var"):
            return np.ones(a.shape, a.dtype)
        if key in ("bias", "mean"):
            return np.zeros(a.shape, a.dtype)
        fan_in = int(np.prod(a.shape[:-1])) or 1
        return np.resize(base, a.shape) / np.float32(np.sqrt(fan_in))

    return jax.tree_util.tree_map_with_path(fill, models.abstract_variables(model, shape))


# One real forward pass per distinct code path. The other sizes of a family run the same code
# with other depths and widths: efficientnet_b1-b7 are b0's blocks under other width/depth
# coefficients, vgg13/16/19 (and their _bn) more of vgg11's (vgg11_bn's) convolutions, resnet34
# more of resnet18's basic blocks, resnet101/152 more of resnet50's bottlenecks. Each of those is
# traced through its whole forward pass (abstract init, exact tree and parameter count) in
# test_cnn_param_counts.py and takes the standard overrides below; a forward pass of each would
# compile the same code again at a larger size.
FORWARD_MODELS = ["alexnet", "densenet121", "efficientnet_b0", "googlenet", "lenet5",
                  "mobilenet_v2", "resnet18", "resnet50", "vgg11", "vgg11_bn"]
_SAME_CODE_AS = {**{f"efficientnet_b{i}": "efficientnet_b0" for i in range(1, 8)},
                 **{f"vgg{d}": "vgg11" for d in (13, 16, 19)},
                 **{f"vgg{d}_bn": "vgg11_bn" for d in (13, 16, 19)},
                 "resnet34": "resnet18", "resnet101": "resnet50", "resnet152": "resnet50"}


def test_forward_models_cover_every_cnn():
    # Every registered CNN has its forward pass here or shares its builder with one that does.
    assert set(FORWARD_MODELS) <= set(CNN_MODELS)
    for name in CNN_MODELS:
        kept = name if name in FORWARD_MODELS else _SAME_CODE_AS[name]
        assert kept in FORWARD_MODELS, name
        assert models.get_spec(name).family == models.get_spec(kept).family, name
        if name != kept:  # one registration function's closures: the same code, other numbers
            assert models.get_spec(name).builder.__code__ is models.get_spec(kept).builder.__code__


@pytest.mark.parametrize("name", FORWARD_MODELS)
def test_forward_small_resolution(name):
    model = models.create(name, num_classes=7)
    shape = _small_shape(name)
    variables = filled_variables(model, shape)
    x = jnp.asarray(np.random.default_rng(1).standard_normal(shape), jnp.float32)
    logits = jax.jit(model.apply, compiler_options=FAST_COMPILE)(variables, x)
    chex.assert_shape(logits, (1, 7))
    assert logits.dtype == jnp.float32
    chex.assert_tree_all_finite(logits)
    assert np.abs(np.asarray(logits)).max() > 0


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "googlenet", "densenet121", "mobilenet_v2"])
def test_bf16_compute_float32_params(name):
    # dtypes are fixed at trace time, so the whole policy is checked abstractly: parameters and
    # batch statistics float32, every module output (conv, norm, block, head) bfloat16.
    model = models.create(name, num_classes=5, dtype=jnp.bfloat16)
    shape = _small_shape(name, batch=2)
    variables = models.abstract_variables(model, shape)
    assert {v.dtype for v in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    rngs = {"dropout": jax.random.key(1), "drop_path": jax.random.key(2)}
    logits, state = jax.eval_shape(
        functools.partial(model.apply, train=True, rngs=rngs, capture_intermediates=True,
                          mutable=["batch_stats", "intermediates"]),
        variables, jax.ShapeDtypeStruct(shape, jnp.float32))
    assert logits.dtype == jnp.bfloat16
    assert {v.dtype for v in jax.tree.leaves(state["batch_stats"])} == {jnp.dtype(jnp.float32)}
    acts = jax.tree.leaves(state["intermediates"])
    assert len(acts) > 20
    assert {a.dtype for a in acts} == {jnp.dtype(jnp.bfloat16)}, "every activation is bf16"


def test_bf16_forward_runs():
    model = models.create("resnet18", num_classes=5, dtype=jnp.bfloat16)
    x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 32, 32, 3)), jnp.float32)
    variables = filled_variables(model, x.shape)
    logits = jax.jit(model.apply, compiler_options=FAST_COMPILE)(variables, x)
    assert logits.dtype == jnp.bfloat16
    ref = jax.jit(models.create("resnet18", num_classes=5).apply, compiler_options=FAST_COMPILE)(variables, x)
    chex.assert_trees_all_close(logits.astype(jnp.float32), ref, atol=0.1, rtol=0.1)


def _tiny_resnet(**kw):
    # The ResNet class of resnet18/34 with one block per stage: same BatchNorm plumbing, less to compile.
    from jaxvision.layers import BasicBlock
    from jaxvision.models.resnet import ResNet

    return ResNet((1, 1), block=BasicBlock, **kw)


def test_batchnorm_train_vs_eval_in_a_model():
    model = _tiny_resnet(num_classes=4, bn_momentum=0.5)
    x = jnp.asarray(np.random.default_rng(3).standard_normal((4, 16, 16, 3)), jnp.float32)
    variables = jax.jit(model.init, compiler_options=FAST_COMPILE)(jax.random.key(0), x)
    train = jax.jit(functools.partial(model.apply, train=True, capture_intermediates=True,
                                      mutable=["batch_stats", "intermediates"]),
                    compiler_options=FAST_COMPILE)
    evaluate = jax.jit(model.apply, compiler_options=FAST_COMPILE)

    logits, state = train(variables, x)
    # momentum 0.5 from zero: the running mean is half the batch mean of the stem conv's output
    conv_out = state["intermediates"]["backbone"]["stem_conv"]["__call__"][0]
    chex.assert_trees_all_close(state["batch_stats"]["backbone"]["stem_norm"]["mean"],
                                0.5 * conv_out.mean((0, 1, 2)), atol=1e-5)
    # train mode: an example's output depends on the rest of the batch; eval mode: it does not
    logits_dup, _ = train(variables, jnp.concatenate([x[:2], x[:2]]))
    assert not np.allclose(logits[:2], logits_dup[:2], atol=1e-4)
    ev = evaluate(variables, x)
    chex.assert_trees_all_close(ev[:2], evaluate(variables, jnp.concatenate([x[:2], x[:2]]))[:2], atol=1e-5)
    # eval mode uses the running statistics: updated statistics change the eval output
    updated = {"params": variables["params"], "batch_stats": state["batch_stats"]}
    assert not np.allclose(evaluate(updated, x), ev, atol=1e-4)


def test_bn_axis_name_synchronizes_statistics():
    model = _tiny_resnet(num_classes=3, bn_axis_name="batch", bn_momentum=0.0)
    plain = _tiny_resnet(num_classes=3, bn_momentum=0.0)
    x = jnp.asarray(np.random.default_rng(4).standard_normal((4, 16, 16, 3)), jnp.float32)
    variables = jax.jit(plain.init, compiler_options=FAST_COMPILE)(jax.random.key(0), x)
    train = lambda m: functools.partial(m.apply, train=True, mutable=["batch_stats"])  # noqa: E731
    shards = jax.jit(jax.vmap(train(model), in_axes=(None, 0), axis_name="batch"),
                     compiler_options=FAST_COMPILE)(variables, x.reshape(2, 2, 16, 16, 3))
    whole = jax.jit(train(plain), compiler_options=FAST_COMPILE)(variables, x)
    chex.assert_trees_all_close(shards[0].reshape(4, 3), whole[0], atol=1e-4, rtol=1e-4)
    chex.assert_trees_all_close(jax.tree.map(lambda a: a[0], shards[1]), whole[1], atol=1e-4, rtol=1e-4)
    # and the registered builders pass the axis name down
    assert models.create("resnet18", bn_axis_name="batch").bn_axis_name == "batch"


@pytest.mark.parametrize("name", CNN_MODELS)
def test_builders_take_the_standard_overrides(name):
    model = models.create(name, bn_axis_name="batch")  # every builder accepts it
    family = models.get_spec(name).family
    has_bn = family in ("googlenet", "resnet", "densenet", "mobilenet_v2", "efficientnet") or name.endswith("_bn")
    if has_bn:
        m = models.create(name, bn_momentum=0.8, bn_epsilon=1e-4, bn_axis_name="batch")
        assert (m.bn_momentum, m.bn_epsilon, m.bn_axis_name) == (0.8, 1e-4, "batch")
    else:
        with pytest.raises(TypeError, match="does not take"):
            models.create(name, bn_momentum=0.8)
    if family != "lenet":
        assert models.create(name, drop_rate=0.123).drop_rate == 0.123
    if family in ("resnet", "mobilenet_v2", "efficientnet"):
        assert models.create(name, drop_path_rate=0.05).drop_path_rate == 0.05
    assert model is not None


def test_unknown_override_is_a_clear_error():
    with pytest.raises(TypeError, match=r"'drop_rat' \(did you mean 'drop_rate'\?\)"):
        models.create("resnet18", drop_rat=0.1)
    with pytest.raises(TypeError, match="width_multiplier"):
        models.create("resnet50", width_multiplier=0.5)


def test_lenet_rejects_wrong_resolution():
    model = models.create("lenet5")
    with pytest.raises(ValueError, match="32x32"):
        models.abstract_variables(model, (1, 28, 28, 1))


def test_resnet_stages_backbone_for_hybrids():
    from jaxvision.layers import Bottleneck, GroupNorm, StdConv
    from jaxvision.models.resnet import ResNetStages

    # R50+ViT-B/16 backbone (google-research/vision_transformer): output stride 16
    r50 = ResNetStages((3, 4, 9), block=Bottleneck, conv=StdConv,
                       norm=functools.partial(GroupNorm, epsilon=1e-6), padding="SAME",
                       zero_init_last=True)
    x = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    variables = jax.eval_shape(r50.init, jax.random.key(0), x)
    assert "batch_stats" not in variables
    assert jax.eval_shape(r50.apply, variables, x).shape == (1, 14, 14, 1024)
    # torchvision ResNet-50 trunk: output stride 32
    trunk = ResNetStages((3, 4, 6, 3))
    v50 = jax.eval_shape(trunk.init, jax.random.key(0), x)
    assert jax.eval_shape(trunk.apply, v50, x).shape == (1, 7, 7, 2048)
    # = resnet50 without its head (2048 * 1000 + 1000)
    assert models.count_params(v50["params"]) == 25557032 - 2049000


def test_model_table_script():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "model_table.py"
    spec = importlib.util.spec_from_file_location("model_table", path)
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    rows = table.model_rows(["lenet5", "resnet18"])
    assert [r["params"] for r in rows] == [61706, 11689512]
    # torchvision lists 1.814 GFLOPS (multiply-adds) for ResNet-18 at 224; XLA skips padded taps
    assert rows[1]["gmacs"] == pytest.approx(1.814, rel=0.08)
    md = table.markdown(rows)
    assert "| `resnet18` | resnet | 224x224x3 | 11,689,512 (11.69M) |" in md
