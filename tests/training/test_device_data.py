"""Device-held data (jaxvision.training.device_data) and chunked stepping (multi_step)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxvision.config import base_config
from jaxvision.evaluation import metrics as eval_metrics
from jaxvision.training import device_data, multi_step, parallel, steps
from jaxvision.training.state import TrainState
from tests.training import fakes


def _indices(step, b, n, seed=0):
    idx, pos = _stream(step, b, n, seed)
    return np.asarray(idx), np.asarray(pos)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _stream(step, b, n, seed):
    return device_data.stream_indices(step, batch_size=b, num_examples=n, seed=seed)


def test_stream_is_a_permutation_per_epoch_and_pure_in_the_step():
    n, b = 50, 8  # 50 is not a multiple of 8: batches straddle epochs
    stream = np.concatenate([_indices(t, b, n)[0] for t in range(25)])  # 200 positions, 4 epochs
    for e in range(4):
        np.testing.assert_array_equal(np.sort(stream[e * n:(e + 1) * n]), np.arange(n))
    assert not np.array_equal(stream[:n], stream[n:2 * n])  # each epoch its own order
    np.testing.assert_array_equal(_indices(13, b, n)[0], stream[13 * b:14 * b])  # resume = index
    np.testing.assert_array_equal(_indices(13, b, n)[1], np.arange(13 * b, 14 * b))
    assert not np.array_equal(_indices(0, b, n, seed=1)[0], stream[:b])


def test_epoch_orders_table_gives_the_stream_drawn_per_step():
    # The table drawn once per run (the default path) must give exactly the batches of the
    # per-step draw, across epoch boundaries, up to the last step of the run.
    n, b, total = 50, 8, 25  # 200 positions: epochs 0-3, the last batch ends epoch 3
    epochs = device_data.epochs_spanned(total, batch_size=b, num_examples=n)
    orders = device_data.epoch_orders(num_examples=n, num_epochs=epochs, seed=3)
    assert orders.shape == (epochs, n) and orders.dtype == jnp.int32
    for e in range(epochs):
        key = jax.random.fold_in(jax.random.key(3), device_data._ORDER_SALT)
        np.testing.assert_array_equal(
            orders[e], jax.random.permutation(jax.random.fold_in(key, e), n))
    table = jax.jit(lambda t, o: device_data.stream_indices(t, batch_size=b, num_examples=n,
                                                            seed=3, orders=o))
    for t in range(total):
        np.testing.assert_array_equal(table(t, orders)[0], _indices(t, b, n, seed=3)[0])
    # drawn in chunks of ORDER_CHUNK epochs: a remainder chunk gives the same rows
    more = device_data.epoch_orders(num_examples=n, num_epochs=device_data.ORDER_CHUNK + 3, seed=3)
    np.testing.assert_array_equal(more[:epochs], orders)
    key = jax.random.fold_in(jax.random.key(3), device_data._ORDER_SALT)
    np.testing.assert_array_equal(more[-1], jax.random.permutation(
        jax.random.fold_in(key, device_data.ORDER_CHUNK + 2), n))
    # batches that end exactly on an epoch's last example still have the next row to read
    assert device_data.epochs_spanned(50, batch_size=8, num_examples=400) == 2
    assert device_data.epochs_spanned(51, batch_size=8, num_examples=400) == 3
    aug = device_data.Augmentation(pad=0, flip=False, fill=(0.0,))
    with pytest.raises(ValueError, match="larger than the 50 examples"):  # would span 3 epochs
        device_data.make_batch_fn(aug, batch_size=51, num_examples=50, seed=0)


def test_pad_crop_is_a_window_of_the_zero_padded_pixels():
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 2, (6, 5, 2)).astype(np.float32)
    fill = (-0.5, 0.25)
    aug = device_data.Augmentation(pad=2, flip=False, fill=fill)
    padded = np.pad(image - np.float32(fill), ((2, 2), (2, 2), (0, 0))) + np.float32(fill)
    outs = jax.vmap(lambda k: device_data.augment_example(k, jnp.asarray(image), aug))(
        jax.random.split(jax.random.key(0), 60))
    seen = set()
    for out in np.asarray(outs):
        hits = [(y, x) for y in range(5) for x in range(5)
                if np.array_equal(out, padded[y:y + 6, x:x + 5])]
        assert len(hits) >= 1
        seen.update(hits)
    assert len(seen) > 15  # offsets spread over the 5 x 5 possibilities


def test_flip_mirrors_about_half_the_time():
    image = jnp.arange(12, dtype=jnp.float32).reshape(2, 3, 2)
    aug = device_data.Augmentation(pad=0, flip=True, fill=(0.0,))
    flips = 0
    outs = jax.vmap(lambda k: device_data.augment_example(k, image, aug))(
        jax.random.split(jax.random.key(0), 200))
    for out in np.asarray(outs):
        if np.array_equal(out, np.asarray(image)[:, ::-1]):
            flips += 1
        else:
            np.testing.assert_array_equal(out, image)
    assert 70 < flips < 130  # Binomial(200, 0.5): 5 sigma


def _setup(batch=8, n=20):
    fakes.register_tiny()
    from jaxvision import models
    from jaxvision.training import loop

    rng = np.random.default_rng(0)
    arrays = {"image": jnp.asarray(rng.normal(size=(n, 16, 16, 1)).astype(np.float32)),
              "label": jnp.asarray(rng.integers(0, fakes.NUM_CLASSES, n).astype(np.int32)),
              "mask": jnp.ones((n,), bool)}
    model = models.create("test_tiny_bn", num_classes=fakes.NUM_CLASSES)
    v = loop.init_variables(model, (16, 16, 1), jax.random.PRNGKey(0))

    def state():
        return TrainState.create(params=jax.tree.map(jnp.copy, v["params"]),
                                 batch_stats=jax.tree.map(jnp.copy, v["batch_stats"]),
                                 tx=optax.adam(1e-3), rng=jax.random.PRNGKey(1))

    aug = device_data.Augmentation(pad=4, flip=True, fill=(0.0,))
    batch_fn = device_data.make_batch_fn(aug, batch_size=batch, num_examples=n, seed=3)
    return model, arrays, state, batch_fn


def test_chunk_of_steps_equals_single_steps_and_resumes_exactly():
    model, arrays, state, batch_fn = _setup()
    train_step = steps.make_train_step(model, num_classes=fakes.NUM_CLASSES)
    run = multi_step.make_multi_step(train_step, batch_fn)
    single, losses = state(), []
    for _ in range(4):  # 4 steps cross an epoch boundary (20 examples, batch 8)
        single, m = run(single, arrays, 1)
        losses.append(float(m["loss"][0]))
    chunked, m = run(state(), arrays, 4)
    # Resumed: 2 steps, then 2 more from the saved state (a checkpoint is this state).
    resumed, _ = run(state(), arrays, 2)
    resumed, _ = run(resumed, arrays, 2)
    assert int(chunked.step) == int(single.step) == int(resumed.step) == 4
    np.testing.assert_allclose(np.asarray(m["loss"]), losses, rtol=1e-6)
    for other in (chunked, resumed):
        for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(other.params),
                        strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_one_dispatch_evaluation_equals_batch_by_batch():
    model, arrays, state, _ = _setup(n=24)
    arrays["mask"] = jnp.arange(24) < 21  # the last batch partly padding
    s = state()
    dp = parallel.DataParallel("jit")
    eval_step = steps.make_eval_step(model, num_classes=fakes.NUM_CLASSES)
    whole = multi_step.make_multi_eval(eval_step, eval_metrics.merge_states, batch_size=8,
                                       replicated=dp.replicated, data_sharding=dp.data_sharding)(
        dp.put_state(s), arrays)
    ref = None
    for i in range(3):
        sums = eval_step(s, jax.tree.map(lambda x, i=i: x[8 * i:8 * (i + 1)], arrays))
        ref = sums if ref is None else eval_metrics.merge_states(ref, sums)
    got = eval_metrics.finalize(eval_metrics.to_host(whole))
    want = eval_metrics.finalize(eval_metrics.to_host(ref))
    assert got["num_examples"] == want["num_examples"] == 21
    for k in ("top1", "nll", "ece"):
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6)


class _Resolved:
    train_crop, eval_crop_fraction, pad_pixels, channels = "random_pad", 1.0, 4, 1
    image_size, mean, std = 32, (0.5,), (0.25,)


def _config(**data):
    c = base_config()
    for k, v in data.items():
        c.data[k] = v
    return c


def test_choose_auto_falls_back_and_on_refuses_with_the_reason():
    shape = (28, 28, 1)
    assert device_data.choose(_config(), _Resolved, 4000, 1, shape)
    c = _config(randaugment_n=2)
    assert not device_data.choose(c, _Resolved, 4000, 1, shape)
    c.device_data = "on"
    with pytest.raises(ValueError, match="randaugment_n"):
        device_data.choose(c, _Resolved, 4000, 1, shape)
    assert not device_data.choose(_config(), _Resolved, 4000, 2, shape)  # two processes
    assert not device_data.choose(_config(), _Resolved, 4000, 1, (28, 30, 1))  # not square
    assert not device_data.choose(_config(), _Resolved, 10**6, 1, shape)  # 4 GB
    c = _config()
    c.device_data = "off"
    assert not device_data.choose(c, _Resolved, 4000, 1, shape)


def test_fill_is_the_normalized_black_pixel():
    aug = device_data.augmentation(_config(flip=False), _Resolved)
    assert aug.pad == 4 and not aug.flip
    np.testing.assert_allclose(aug.fill, [(0 - 0.5) / 0.25])


def _digits_config(total_steps, **kw):
    c = base_config()
    c.model.name = "lenet5"
    c.data.name = "digits"
    c.data.image_size = 32
    c.data.flip = False
    c.batch_size = 16
    c.total_steps = total_steps
    c.optimizer.name = "adam"
    c.schedule.name = "constant"
    c.schedule.base_lr = 1e-3
    c.log_every_steps = 2
    c.eval_every_steps = 2
    c.checkpoint_every_steps = 2
    c.progress_bar = False
    c.device_data = "on"
    for k, v in kw.items():
        c[k] = v
    return c


@pytest.mark.slow
def test_loop_on_device_resumes_exactly_and_evaluates_as_the_pipeline(tmp_path, monkeypatch):
    """The real loop on the bundled digits: 4 steps at once == 2 steps, then resumed to 4; the
    validation metrics the loop computes on device == the tf.data evaluation of the run."""
    # The device path runs on one device (device_data.maybe_create refuses several CPU ones).
    all_devices = jax.devices
    monkeypatch.setattr(jax, "devices", lambda *a, **k: all_devices(*a, **k)[:1])
    from jaxvision import evaluation
    from jaxvision.training import checkpoints, loop

    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    res = loop.train_and_evaluate(_digits_config(4), whole)
    loop.train_and_evaluate(_digits_config(2), parts)
    loop.train_and_evaluate(_digits_config(4), parts)
    a, b = checkpoints.load_run(whole), checkpoints.load_run(parts)
    assert a.step == b.step == 4
    for x, y in zip(jax.tree.leaves(a.variables), jax.tree.leaves(b.variables), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    ref = evaluation.evaluate_run(a, "validation", batch_size=16, out_dir=None)
    np.testing.assert_allclose(res["val/top1"], ref["top1"], rtol=1e-6)
    np.testing.assert_allclose(res["val/nll"], ref["nll"], rtol=1e-4)
