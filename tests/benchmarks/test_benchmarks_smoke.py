"""Smoke tests of the benchmark harness: keys, sane values, FLOPs against a hand count.

Timings are never asserted (the machine is shared); only that they are positive and finite.
"""

import functools
import json
import math
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def lenet5_forward_flops(num_classes=10):
    """2 x multiply-adds of LeNet-5 on one 1x32x32 image, counted by hand from the layer shapes."""
    conv1 = 28 * 28 * (5 * 5 * 1) * 6  # 5x5 VALID on 32x32 -> 28x28x6
    conv2 = 10 * 10 * (5 * 5 * 6) * 16  # after 2x2 pool: 14x14 -> 10x10x16
    fc = 400 * 120 + 120 * 84 + 84 * num_classes  # after pool: 5x5x16 = 400
    return 2 * (conv1 + conv2 + fc)


@pytest.fixture(scope="module")
def lenet_result():
    env = dict(os.environ, XLA_FLAGS="", PYTHONPATH=ROOT)
    cmd = [sys.executable, "-m", "benchmarks.throughput", "--model", "lenet5", "--batch", "8",
           "--res", "32", "--steps", "2", "--warmup", "1", "--probe-size", "256", "--json"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_throughput_json_keys_and_sane_values(lenet_result):
    r = lenet_result
    for key in ("train_img_per_s", "infer_img_per_s", "compile_s", "flops_per_img", "mfu",
                "peak_bytes", "train_step_s", "infer_step_s", "peak_flops_f32", "peak_flops_bf16"):
        assert isinstance(r[key], int | float) and math.isfinite(r[key]) and r[key] > 0, key
    assert r["device"].startswith("cpu")
    assert r["model"] == "lenet5" and r["batch"] == 8 and r["res"] == 32
    assert r["params"] == 61_706
    assert r["train_traces"] == 1
    assert 0 < r["mfu"] < 1
    assert r["train_img_per_s"] == pytest.approx(8 / r["train_step_s"])
    # The state alone (params + momentum) is 2 x 61,706 float32: memory must hold at least that.
    assert r["peak_bytes"] >= 2 * 61_706 * 4


def test_flops_match_hand_count(lenet_result):
    hand = lenet5_forward_flops()
    # XLA counts the multiply-adds plus the (few) elementwise ops: within 10% of the hand count.
    assert hand <= lenet_result["infer_flops_per_img"] <= 1.1 * hand
    # Training is forward + two backward products per layer: about 3x the forward.
    assert 2.5 * hand <= lenet_result["flops_per_img"] <= 3.6 * hand


def test_bad_model_name_gives_clear_error():
    from benchmarks import throughput

    with pytest.raises(SystemExit) as e:
        throughput.main(["--model", "lenet", "--batch", "2", "--no-probe"])
    assert "Unknown model 'lenet'" in str(e.value) and "lenet5" in str(e.value)
    with pytest.raises(SystemExit, match="divisible"):
        throughput.main(["--model", "lenet5", "--batch", "3", "--devices", "2", "--no-probe"])


def test_library_train_step_is_traced_once():
    """The step the benchmark times is compiled once and reused with its donated state."""
    from benchmarks.throughput import build_train_step
    from jaxvision import models
    from jaxvision.training.parallel import DataParallel

    model = models.create("lenet5")
    x = np.zeros((4, 32, 32, 1), np.float32)
    variables = jax.jit(lambda k, x: model.init(k, x, train=False))(jax.random.key(0), x)
    dp = DataParallel("jit", devices=jax.devices()[:1])
    step, state = build_train_step(model, variables, 10, dp)
    step = chex.assert_max_traces(step, n=1)
    compiled = dp.compile_train_step(step)
    state = dp.put_state(state)
    batch = dp.put_batch({"image": x, "label": np.arange(4, dtype=np.int32)})
    losses = []
    for _ in range(3):
        state, metrics = compiled(state, batch)
        losses.append(float(metrics["loss"]))
    assert int(state.step) == 3
    # Same batch three times with SGD: the loss falls.
    assert losses[2] < losses[0]
    assert isinstance(state.tx, optax.GradientTransformation)
    chex.assert_trees_all_equal_dtypes(state.params, jax.tree.map(jnp.asarray, variables["params"]))


def test_flops_do_not_depend_on_the_conv_lowering():
    """MFU counts the model's FLOPs: the lowered step's count is the same (within the few
    elementwise ops) whether convolutions run as XLA convs or as the CPU lowering's matmuls and
    shifted products. (The compiled count is not: XLA's depthwise weight gradient computes a
    dense C x C kernel.)"""
    from benchmarks.throughput import _flops, build_train_step
    from jaxvision import models
    from jaxvision.layers import set_conv_impl
    from jaxvision.training.parallel import DataParallel

    x = np.zeros((2, 32, 32, 3), np.float32)
    dp = DataParallel("jit", devices=jax.devices()[:1])
    counts = {}
    try:
        for impl in ("xla", "cpu"):
            set_conv_impl(impl)
            model = models.create("mobilenet_v2", num_classes=10)
            variables = jax.eval_shape(functools.partial(model.init, train=False),
                                       jax.random.key(0), x)
            variables = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), variables)
            step, state = build_train_step(model, variables, 10, dp)
            batch = {"image": x, "label": np.zeros(2, np.int32)}
            counts[impl] = _flops(dp.compile_train_step(step).lower(state, batch))
    finally:
        set_conv_impl(None)
    assert counts["cpu"] == pytest.approx(counts["xla"], rel=0.05)


def test_sharding_benchmark_bytes_and_compile():
    """benchmarks/sharding.py: the unsharded state is AdamW's 3 float32 copies of every parameter
    plus its int32 step count; 8-way FSDP holds <= 1/6 of it per device; the compiled step of a
    sharded mesh reports a peak that holds at least its own state."""
    from benchmarks import sharding

    dp = sharding.measure("vit_ti16", {"data": 8}, batch=8, res=32, dtype="float32",
                          compile_step=False)
    fsdp = sharding.measure("vit_ti16", {"fsdp": 8}, batch=8, res=32, dtype="float32",
                            compile_step=False)
    assert dp["state_bytes"] == dp["state_bytes_unsharded"] == 12 * dp["params"] + 4
    assert fsdp["state_bytes"] <= dp["state_bytes"] / 6
    row = sharding.measure("lenet5", {"fsdp": 4, "model": 2}, batch=8, res=None,
                           dtype="float32")
    assert row["mesh"] == {"data": 1, "fsdp": 4, "model": 2}
    assert row["peak_bytes"] >= row["state_bytes"] > 0
    assert sharding.parse_layouts("a:data=2,fsdp=4;b:fsdp=8") == [
        ("a", {"data": 2, "fsdp": 4}), ("b", {"fsdp": 8})]
    with pytest.raises(ValueError, match="axis=size pairs"):
        sharding.parse_mesh("fsdp:8")


def test_throughput_on_a_sharded_mesh():
    """benchmarks.throughput --mesh: the library's step on an 8-way FSDP mesh; the state stays
    sharded through the steps and the batch check follows data x fsdp."""
    from benchmarks import throughput

    r = throughput.benchmark("lenet5", 8, devices=8, mesh={"fsdp": 8}, steps=1, warmup=0,
                             infer=False, probe=False, return_state=True)
    assert r["mesh"] == {"data": 1, "fsdp": 8, "model": 1}
    assert np.isfinite(r["_loss"]) and r["peak_bytes"] > 0
    with pytest.raises(ValueError, match="divisible by mesh data x fsdp = 4"):
        throughput.benchmark("lenet5", 6, devices=8, mesh={"fsdp": 4, "model": 2}, steps=1,
                             infer=False, probe=False)
