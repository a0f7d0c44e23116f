"""jit (8 devices) vs pmap (8 devices) vs one device: same parameters after N steps."""

import chex
import jax
import numpy as np
import pytest

from jaxvision.training import loop, optimizers, parallel, steps
from jaxvision.training.state import TrainState
from tests.training import fakes

N_STEPS = 4
GLOBAL_BATCH = 32


def _train(mode, devices, config):
    fakes.register_tiny()
    dp = parallel.DataParallel(mode, devices=devices)
    model = loop.build_model(config, fakes.NUM_CLASSES, pmap=mode == "pmap")
    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(0))
    v = loop.init_variables(model, fakes.SHAPE, init_rng)
    tx, schedule = optimizers.build_optimizer(config, v["params"], total_steps=N_STEPS,
                                              steps_per_epoch=N_STEPS)
    state = TrainState.create(params=v["params"], batch_stats=v["batch_stats"], tx=tx,
                              rng=train_rng, ema=config.ema_decay > 0)
    state = dp.put_state(state)
    step = dp.compile_train_step(steps.make_train_step(
        model, num_classes=fakes.NUM_CLASSES, schedule=schedule, axis_name=dp.axis_name,
        ema_decay=config.ema_decay, label_smoothing=config.label_smoothing))
    data = fakes.make_build()(None, "train", global_batch_size=GLOBAL_BATCH, train=True, seed=3)
    losses = []
    for _, batch in zip(range(N_STEPS), data, strict=False):
        state, m = step(state, dp.put_batch(batch))
        losses.append(float(dp.host_value(m)["loss"]))
    return dp.host_value({"params": state.params, "batch_stats": state.batch_stats,
                          "ema": state.ema_params}), losses


@pytest.mark.parametrize("optimizer", ["adamw"])
def test_jit_pmap_and_one_device_agree(optimizer):
    assert jax.device_count() == 8, "tests/conftest.py gives 8 simulated CPU devices"
    config = fakes.tiny_config(**{"optimizer.name": optimizer, "ema_decay": 0.9,
                                  "label_smoothing": 0.1,
                                  "schedule.base_lr": 0.1 if optimizer == "sgd" else 0.01})
    one, l1 = _train("jit", jax.devices()[:1], config)
    jit8, l8 = _train("jit", jax.devices(), config)
    pmap8, lp = _train("pmap", jax.devices(), config)
    # Sanity: training changed the parameters (else equality would be vacuous).
    assert l1[-1] < l1[0]
    np.testing.assert_allclose(l1, l8, rtol=1e-5)
    np.testing.assert_allclose(l1, lp, rtol=1e-5)
    chex.assert_trees_all_close(one, jit8, atol=1e-5, rtol=1e-5)
    chex.assert_trees_all_close(one, pmap8, atol=1e-5, rtol=1e-5)
