"""FSDP and tensor-parallel meshes (config.mesh) on 8 simulated CPU devices.

* The rules (jaxvision.training.sharding) give the layouts their docstring states (largest
  divisible dimension over 'fsdp', heads / MLP hidden units over 'model', regex overrides).
* A tiny ViT and a tiny BatchNorm CNN trained 3 steps under data parallelism (8), FSDP (8) and
  FSDP (4) x model (2) end with the parameters, BatchNorm statistics and optimizer state of one
  device, within float32 rounding; under 8-way FSDP each device holds <= 1/6 of DP's bytes.
* Bad meshes are one-line ValueErrors before any step.
"""

import chex
import jax
import pytest
from jax.sharding import PartitionSpec as P

from jaxvision.training import loop, mesh, optimizers, parallel, sharding, steps
from jaxvision.training.state import TrainState
from tests.training import fakes

N_STEPS = 3
BATCH = 16
# Data parallelism (8 devices) against one device: tests/training/test_parallel.py.
LAYOUTS = {"fsdp8": {"fsdp": 8}, "fsdp4_model2": {"fsdp": 4, "model": 2}}
SIZES = {"data": 1, "fsdp": 4, "model": 2}


# ---- rules -----------------------------------------------------------------------------------
@pytest.mark.parametrize("path, shape, want", [
    # tensor parallel: heads / hidden units over 'model', then FSDP on the largest free dimension
    ("params/encoder/block_0/attn/query/kernel", (64, 4, 16), P("fsdp", "model", None)),
    ("params/encoder/block_0/attn/query/bias", (4, 16), P("model", None)),
    ("params/encoder/block_0/attn/out/kernel", (4, 16, 64), P("model", None, "fsdp")),
    ("params/encoder/block_0/mlp/fc1/kernel", (64, 256), P("fsdp", "model")),
    ("params/encoder/block_0/mlp/fc1/bias", (256,), P("model")),
    ("params/encoder/block_0/mlp/fc2/kernel", (256, 64), P("model", "fsdp")),
    # layers stacked by scan_layers=True: the same split, one dimension further right
    ("params/encoder/blocks/attn/key/kernel", (12, 64, 4, 16), P(None, "fsdp", "model", None)),
    ("params/encoder/blocks/mlp/fc2/kernel", (12, 256, 64), P(None, "model", "fsdp")),
    # an optimizer moment is laid out as its parameter
    ("opt_state/0/0/mu/encoder/block_0/mlp/fc2/kernel", (256, 64), P("model", "fsdp")),
    # FSDP only: the largest dimension that divides by 4 (a 3x3 conv kernel: its output channels)
    ("params/stem/conv/kernel", (3, 3, 16, 64), P(None, None, None, "fsdp")),
    ("params/head/kernel", (64, 1001), P("fsdp", None)),
    # not divisible anywhere / too small: replicated
    ("params/head/kernel", (63, 1001), P(None, None)),
    ("params/encoder/norm/scale", (64,), P(None)),
    ("step", (), P()),
])
def test_default_rules(path, shape, want):
    assert sharding.spec_for(path, shape, SIZES) == want


def test_user_rules_win_and_are_checked():
    rules = sharding.parse_rules((("head/kernel", (None, ("fsdp", "model"))), ("norm", None)))
    assert sharding.spec_for("params/head/kernel", (64, 1000), SIZES, rules) == P(
        None, ("fsdp", "model"))
    assert sharding.spec_for("params/encoder/norm/scale", (64,), SIZES, rules) == P()
    with pytest.raises(ValueError, match="dimension 1 of size 1001 does not split over fsdpxmodel"):
        sharding.spec_for("params/head/kernel", (64, 1001), SIZES, rules)
    for bad, msg in [((("x",),), "not a \\(regex, spec\\) pair"), ((("(", ()),), "bad regex"),
                     ((("x", ("tensor",)),), "unknown mesh axis 'tensor'")]:
        with pytest.raises(ValueError, match=msg):
            sharding.parse_rules(bad)


def test_mesh_sizes_resolve_and_refuse():
    assert mesh.resolve({"data": -1, "fsdp": 1, "model": 1}, 8) == {"data": 8, "fsdp": 1,
                                                                   "model": 1}
    assert mesh.resolve({"data": 2, "fsdp": -1, "model": 2}, 8)["fsdp"] == 2
    for sizes, msg in [({"data": -1, "fsdp": 3}, "needs a multiple of 3 devices"),
                       ({"data": 2, "fsdp": 2, "model": 1}, "uses 4 devices, but there are 8"),
                       ({"data": -1, "fsdp": -1}, "only one axis may be -1"),
                       ({"data": 0}, "mesh.data=0 is not valid"),
                       ({"tensor": 2}, "unknown axes")]:
        with pytest.raises(mesh.MeshError, match=msg):
            mesh.resolve(sizes, 8)
    with pytest.raises(mesh.MeshError, match="batch_size=12 is not divisible by mesh data x fsdp "
                                             "= 8 batch shards.*8 or 16"):
        mesh.check_batch(12, {"data": 2, "fsdp": 4, "model": 2})
    with pytest.raises(ValueError, match="'pmap' is data parallel only.*--config.parallel=jit"):
        parallel.DataParallel("pmap", mesh_sizes={"fsdp": 8})


# ---- training --------------------------------------------------------------------------------
def _config(vit: bool):
    # The ViT trains with SGD + momentum: the attention key bias has a zero gradient in exact
    # arithmetic (softmax is shift invariant), and Adam would scale its rounding noise up to the
    # learning rate, so its values would differ between layouts by more than rounding.
    opt = {"optimizer.name": "sgd", "schedule.base_lr": 0.1} if vit else {
        "optimizer.name": "adamw", "schedule.base_lr": 0.01}
    return fakes.tiny_config(**{**opt, "ema_decay": 0.9, **(fakes.TINY_VIT if vit else {})})


def _train(config, devices, sizes):
    """N_STEPS steps on the fake data -> (host copy of the state, the state's device arrays)."""
    fakes.register_tiny()
    # fsdp_min_size=0: the tiny models' arrays are all below big_vision's 4000-element floor.
    dp = parallel.DataParallel("jit", devices=devices, mesh_sizes=sizes, fsdp_min_size=0)
    model = loop.build_model(config, fakes.NUM_CLASSES, pmap=False)
    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(0))
    v = loop.init_variables(model, fakes.SHAPE, init_rng, dp)  # created sharded when dp shards
    if dp.sharded:
        assert any(x.sharding.spec != P() and len(x.addressable_shards) == 8
                   and x.addressable_shards[0].data.size < x.size
                   for x in jax.tree.leaves(v["params"]))
    tx, schedule = optimizers.build_optimizer(config, v["params"], total_steps=N_STEPS,
                                              steps_per_epoch=N_STEPS)
    state = dp.put_state(TrainState.create(params=v["params"], batch_stats=v["batch_stats"],
                                           tx=tx, rng=train_rng, ema=True))
    step = dp.compile_train_step(steps.make_train_step(
        model, num_classes=fakes.NUM_CLASSES, schedule=schedule, ema_decay=config.ema_decay),
        state)
    data = fakes.make_build()(None, "train", global_batch_size=BATCH, train=True, seed=3)
    for _, batch in zip(range(N_STEPS), data, strict=False):
        state, _ = step(state, dp.put_batch(batch))
    host = dp.host_value({"params": state.params, "batch_stats": state.batch_stats,
                          "opt_state": state.opt_state, "ema": state.ema_params})
    return host, state


@pytest.fixture(scope="module", params=["vit", "bn_cnn"])
def trained(request):
    config = _config(request.param == "vit")
    ref, _ = _train(config, jax.devices()[:1], None)
    return request.param, ref, {name: _train(config, jax.devices(), sizes)
                                for name, sizes in LAYOUTS.items()}


def test_layouts_train_like_one_device(trained):
    kind, ref, runs = trained
    for name, (host, state) in runs.items():
        chex.assert_trees_all_close(ref, host, atol=1e-5, rtol=1e-5, custom_message=name)
        specs = {tuple(x.sharding.spec) for x in jax.tree.leaves(state.params)}
        assert any("fsdp" in s for s in specs), specs
        if name == "fsdp4_model2" and kind == "vit":
            assert any("model" in s for s in specs), specs
        # the optimizer's moments keep their parameters' layout through the step
        params = _by_path(state.params)
        moments = [(p, x) for p, x in _by_path(state.opt_state).items() if x.ndim]
        assert moments
        for p, x in moments:
            mine = [k for k in params if p.endswith(k)]
            assert mine and x.sharding == params[mine[0]].sharding, p
    # training moved the parameters (the EMA lags behind them), else the equality were vacuous
    assert not fakes.jnp_tree_allclose(ref["params"], ref["ema"], atol=1e-6)


def _by_path(tree) -> dict:
    return {sharding.path_string(k): x for k, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _device0_bytes(tree) -> int:
    """Bytes device 0 holds of the arrays of ``tree`` (read off the arrays' own shards)."""
    d0 = jax.devices()[0]
    return sum(s.data.nbytes for x in jax.tree.leaves(tree) for s in x.addressable_shards
               if s.device == d0)


def test_fsdp_per_device_bytes(trained):
    _, ref, runs = trained
    dp_bytes = sum(x.nbytes for x in jax.tree.leaves((ref["params"], ref["opt_state"])))
    fsdp_bytes = _device0_bytes((runs["fsdp8"][1].params, runs["fsdp8"][1].opt_state))
    assert fsdp_bytes <= dp_bytes / 6, (fsdp_bytes, dp_bytes)  # DP: every device holds it all
    # bytes_per_device (what benchmarks/sharding.py prints) reads the same off the layouts
    st = runs["fsdp8"][1]
    tree = (st.params, st.opt_state)
    assert sharding.bytes_per_device(tree, jax.tree.map(lambda x: x.sharding, tree)) == fsdp_bytes
