"""The training loop on synthetic data: loss falls, errors are clear, fine-tuning swaps the head."""

import json
import os

import chex
import jax
import numpy as np
import pytest

from jaxvision import env_settings
from jaxvision.training import checkpoints, loop
from tests.training import fakes


@pytest.fixture(autouse=True)
def _tiny_model():
    fakes.register_tiny()


def _jsonl(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """(workdir, result) of one 20-step run, shared read-only by the tests of this module."""
    fakes.register_tiny()
    wd = str(tmp_path_factory.mktemp("trained") / "run")
    c = fakes.tiny_config(total_steps=20, log_every_steps=5)
    return wd, loop.train_and_evaluate(c, wd, build_data=fakes.make_build())


def test_loss_falls_and_workdir_layout(trained_run):
    wd, res = trained_run
    train = [r for r in _jsonl(wd) if "train/loss" in r]
    assert [r["step"] for r in train] == [5, 10, 15, 20]
    # Chance level for 4 classes is ln 4 = 1.386; the synthetic task is learnable.
    assert train[0]["train/loss"] > 2 * train[-1]["train/loss"]
    assert res["val/top1"] > 0.9
    for name in ("config.json", "env.json", "metrics.jsonl", "tensorboard", "checkpoints"):
        assert os.path.exists(os.path.join(wd, name)), name
    cfg = json.load(open(os.path.join(wd, "config.json")))
    assert cfg["total_steps"] == 20 and cfg["model"]["num_classes"] == fakes.NUM_CLASSES
    env = json.load(open(os.path.join(wd, "env.json")))
    assert env["device_count"] == 8 and "jax" in env["packages"]
    # The lowering settings a run was traced under are on record with it.
    assert env["jaxvision_env"] == {k: v for k, v in os.environ.items() if k.startswith("JAXVISION_")}
    assert env["onednn_bf16"]["setting"] == env_settings.choice("JAXVISION_ONEDNN_BF16")
    assert any(f.startswith("events") for f in os.listdir(os.path.join(wd, "tensorboard")))

    run = checkpoints.load_run(wd)
    assert run.step == 20 and run.class_names == ["c0", "c1", "c2", "c3"]
    # load_run's model reproduces the loop's validation accuracy (independent numpy top-1).
    data = fakes.make_build()(None, "test", global_batch_size=32, train=False)
    hits = n = 0
    for b in data:
        logits = np.asarray(run.model.apply(run.variables, b["image"], train=False))
        hits += np.sum((logits.argmax(-1) == b["label"]) & b["mask"])
        n += b["mask"].sum()
    assert hits / n == pytest.approx(res["val/top1"], abs=1e-6)
    best = checkpoints.load_run(wd, "best")
    assert best.step in (10, 20) and best.metrics["val/top1"] == max(
        r["val/top1"] for r in _jsonl(wd) if "val/top1" in r)


def test_batch_not_divisible_by_devices_is_clear(tmp_path):
    c = fakes.tiny_config(batch_size=30)
    with pytest.raises(ValueError, match=r"batch_size=30 is not divisible by the 8 devices.*24"):
        loop.train_and_evaluate(c, str(tmp_path), build_data=fakes.make_build())


def test_resume_with_other_class_count_is_clear(trained_run):
    wd, _ = trained_run  # 4 classes; the error comes before anything is written to wd
    c = fakes.tiny_config(total_steps=40)
    with pytest.raises(checkpoints.CheckpointMismatchError,
                       match=r"4 classes \(this config: 6\).*init_from"):
        loop.train_and_evaluate(c, wd, build_data=fakes.make_build(num_classes=6))
    assert checkpoints.load_run(wd).step == 20


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    wd = str(tmp_path / "run")
    good = fakes.make_build()

    def poisoned(*args, **kw):
        pipe = good(*args, **kw)
        if not kw["train"]:
            return pipe

        class P:
            info = pipe.info

            def __iter__(self):
                for b in pipe:
                    step = yield_step[0]
                    yield_step[0] += 1
                    if step >= 6:
                        b = dict(b, image=np.full_like(b["image"], np.nan))
                    yield b

        return P()

    yield_step = [0]
    c = fakes.tiny_config(total_steps=12, checkpoint_every_steps=4, eval_every_steps=0,
                          log_every_steps=100)
    with pytest.raises(loop.TrainingDivergedError, match=r"NaN or Inf by step 8.*step 4"):
        loop.train_and_evaluate(c, wd, build_data=poisoned)
    run = checkpoints.load_run(wd)
    assert run.step == 4
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(run.variables))


def test_finetune_other_class_count_reinitializes_head(tmp_path, trained_run):
    src, _ = trained_run
    dst = str(tmp_path / "dst")
    c = fakes.tiny_config(total_steps=1, eval_every_steps=0, init_from=src,
                          **{"optimizer.freeze": ".*"})  # frozen: params stay as loaded
    loop.train_and_evaluate(c, dst, build_data=fakes.make_build(num_classes=6))
    listed = json.load(open(os.path.join(dst, "init_from.json")))["reinitialized"]
    assert sorted(x.split(":")[0] for x in listed) == ["head/bias", "head/kernel"]
    assert "(128, 4) -> (128, 6)" in " ".join(listed)
    a, b = checkpoints.load_run(src), checkpoints.load_run(dst)
    assert b.variables["params"]["head"]["kernel"].shape == (128, 6)
    # Everything but the head comes from the source run (lr 0 keeps it; BatchNorm statistics
    # move during the one train step, so they are not compared).
    for name in ("Conv_0", "BatchNorm_0"):
        chex.assert_trees_all_close(a.variables["params"][name], b.variables["params"][name])


def test_early_stopping_with_patience(tmp_path):
    c = fakes.tiny_config(total_steps=200, eval_every_steps=2, checkpoint_every_steps=1000,
                          **{"early_stopping.patience": 2, "early_stopping.metric": "top1",
                             "early_stopping.min_delta": 0.5})
    res = loop.train_and_evaluate(c, str(tmp_path), build_data=fakes.make_build())
    # top1 cannot improve by 0.5 twice in a row: first eval sets best, next two count as bad.
    assert res.get("early_stopped") and res["step"] == 6


def test_float16_with_loss_scaling_trains(tmp_path):
    """float16 compute + dynamic loss scaling: the loss still falls, params stay float32."""
    wd = str(tmp_path / "run")
    c = fakes.tiny_config(total_steps=10, log_every_steps=5, eval_every_steps=0, dtype="float16")
    loop.train_and_evaluate(c, wd, build_data=fakes.make_build())
    rows = [r for r in _jsonl(wd) if "train/loss" in r]
    assert rows[-1]["train/loss"] < rows[0]["train/loss"]
    assert rows[0]["train/loss_scale"] == 2.0**15
    run = checkpoints.load_run(wd)
    assert all(x.dtype == np.float32 for x in jax.tree.leaves(run.variables))
