"""pmap and jit take the same step on a masked (partial) batch: each valid row weighs alike.

The partial batch is the last of an epoch: rows past the epoch's end are padding (mask False), so
on 8 devices some devices hold only padding. A pmean of per-device means would weigh those rows
differently from jit's global masked mean (experiments/pmap_vs_jit: 1.3e-4 apart after one step).
"""

import chex
import jax
import numpy as np

from jaxvision.training import loop, optimizers, parallel, steps
from tests.training import fakes
from tests.training.test_parallel import GLOBAL_BATCH

NUM_VALID = 5  # of the partial batch: devices 0-2 hold 2, 2, 1 valid rows, devices 3-7 none


def _batches():
    data = fakes.make_build()(None, "train", global_batch_size=GLOBAL_BATCH, train=True, seed=5)
    for t, batch in zip(range(3), data, strict=False):  # full, partial (epoch end), full
        if t == 1:
            batch = {**batch, "mask": np.arange(GLOBAL_BATCH) < NUM_VALID}
        yield batch


def _train(mode, devices, config):
    fakes.register_tiny()
    dp = parallel.DataParallel(mode, devices=devices)
    model = loop.build_model(config, fakes.NUM_CLASSES, pmap=mode == "pmap")
    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(0))
    v = loop.init_variables(model, fakes.SHAPE, init_rng)
    tx, schedule = optimizers.build_optimizer(config, v["params"], total_steps=3,
                                              steps_per_epoch=2)
    state = dp.put_state(loop._fresh_state(config, v, tx, train_rng))
    step = dp.compile_train_step(steps.make_train_step(
        model, num_classes=fakes.NUM_CLASSES, schedule=schedule, axis_name=dp.axis_name))
    metrics = []
    for batch in _batches():
        state, m = step(state, dp.put_batch(batch))
        metrics.append(dp.host_value(m))
    return dp.host_value(state.params), metrics


def test_pmap_equals_jit_across_a_partial_batch():
    assert jax.device_count() == 8, "tests/conftest.py gives 8 simulated CPU devices"
    config = fakes.tiny_config(**{"optimizer.name": "sgd", "schedule.base_lr": 0.5})
    jit_params, jit_m = _train("jit", jax.devices(), config)
    pmap_params, pmap_m = _train("pmap", jax.devices(), config)
    chex.assert_trees_all_close(pmap_params, jit_params, atol=2e-6, rtol=1e-5)
    for key in ("loss", "accuracy", "grad_norm"):
        np.testing.assert_allclose([m[key] for m in pmap_m], [m[key] for m in jit_m], rtol=1e-5,
                                   err_msg=key)
    # The partial batch's accuracy is a fraction of its 5 valid rows (not of 32, nor of 8-row
    # device means).
    assert np.isclose(jit_m[1]["accuracy"] * NUM_VALID, round(jit_m[1]["accuracy"] * NUM_VALID))
