"""The pieces behind reliable runs, in-process and cheap: the on_evaluate hook, the workdir lock,
checkpoint digests, data identity, the deduplicated metric log, config validation, the roll call."""

import json
import os
import signal
import threading

import numpy as np
import pytest

from jaxvision import config as config_lib
from jaxvision.training import (
    data_identity,
    integrity,
    loop,
    metric_log,
    preemption,
    rendezvous,
    workdir_lock,
)
from tests.training import fakes


@pytest.fixture(autouse=True)
def _tiny_model():
    fakes.register_tiny()


def test_on_evaluate_stops_with_a_committed_checkpoint(tmp_path):
    seen = []

    def hook(step, metrics):
        seen.append((step, sorted(metrics)))
        return step == 4

    wd = str(tmp_path / "run")
    c = fakes.tiny_config(total_steps=20, eval_every_steps=2, checkpoint_every_steps=100)
    res = loop.train_and_evaluate(c, wd, build_data=fakes.make_build(), on_evaluate=hook)
    assert res["stopped"] == "on_evaluate" and res["step"] == 4
    assert [s for s, _ in seen] == [2, 4] and "val/top1" in seen[0][1]
    assert sorted(os.listdir(os.path.join(wd, "checkpoints"))) == ["2", "4"]  # committed


def test_workdir_lock_refuses_a_second_holder_and_takes_over_a_dead_ones(tmp_path, caplog):
    wd = str(tmp_path)
    with workdir_lock.WorkdirLock(wd):
        with pytest.raises(workdir_lock.WorkdirBusyError, match=f"pid {os.getpid()}"):
            # A second open file description of the same lock file: flock conflicts as it would
            # between two processes.
            workdir_lock.WorkdirLock(wd).__enter__()
    assert open(os.path.join(wd, "lock")).read() == ""  # released cleanly
    with open(os.path.join(wd, "lock"), "w") as f:
        json.dump({"host": "h", "pid": 4242, "since": 0}, f)  # left by a killed run
    with workdir_lock.WorkdirLock(wd):
        assert json.load(open(os.path.join(wd, "lock")))["pid"] == os.getpid()
    assert "pid 4242" in caplog.text and "taking over" in caplog.text


def test_digest_detects_any_changed_byte_and_quarantine_moves(tmp_path):
    tree = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": {"c": np.int32(7)}}
    meta = {integrity.DIGEST_KEY: integrity.tree_digest(tree)}
    integrity.verify(1, tree, meta)
    # Independent reference: the same bytes through hashlib directly give the same leaf digest.
    import hashlib

    a = tree["a"]
    ref = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()
    assert ref in meta[integrity.DIGEST_KEY]
    bad = {"a": tree["a"].copy(), "b": tree["b"]}
    bad["a"].reshape(-1).view(np.uint8)[5] ^= 1
    with pytest.raises(integrity.DamagedCheckpointError, match="1 of 2 arrays differs"):
        integrity.verify(1, bad, meta)
    step_dir = tmp_path / "checkpoints" / "7"
    step_dir.mkdir(parents=True)
    with pytest.raises(integrity.DamagedCheckpointError, match="commit_success.txt"):
        integrity.check_complete(7, str(step_dir))
    moved = integrity.quarantine(str(tmp_path), str(step_dir))
    assert moved.endswith("checkpoints_damaged/7") and not step_dir.exists()
    assert integrity.damaged_steps(str(tmp_path)) == ["7"]


def test_data_identity_names_what_changed():
    saved = {"class_names": ["a", "b"], "splits": {
        "train": {"files": 16, "per_class": [8, 8], "sha256": "x"},
        "validation": {"dataset": "cifar10", "version": "3.0.2", "split": "validation",
                       "examples": 10}}}
    same = json.loads(json.dumps(saved))
    assert data_identity.changes(saved, same) == []
    assert data_identity.changes(None, same) == []  # checkpoints from before identities
    other = json.loads(json.dumps(saved))
    other["class_names"] = ["z", "b"]
    other["splits"]["train"].update(files=15, sha256="y")
    other["splits"]["validation"]["version"] = "3.0.3"
    got = data_identity.changes(saved, other)
    assert got[0].startswith("class names changed (removed ['a'], added ['z'])")
    assert got[1] == "split 'train' changed: 16 -> 15 files"
    assert got[2] == "split 'validation' changed: version '3.0.2' -> '3.0.3'"
    # Another training split: each split's own fingerprint may match, the training data does not.
    half, whole = (dict(json.loads(json.dumps(saved)), train_split=s)
                   for s in ("train[:50%]", "train"))
    assert data_identity.changes(half, whole) == [
        "training split changed: 'train[:50%]' -> 'train'"]
    assert data_identity.changes(saved, whole) == []  # a checkpoint that does not record it


def test_data_identity_records_the_training_split(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXVISION_DATASET_CACHE", str(tmp_path))
    cfg = config_lib.base_config().data
    cfg.name = "digits"
    got = data_identity.fingerprint(cfg, ["train", "validation", ""], [str(i) for i in range(10)])
    assert got["train_split"] == "train" and set(got["splits"]) == {"train", "validation"}


def test_metric_log_keeps_each_step_once_across_resumes(tmp_path):
    wd = str(tmp_path)
    w = metric_log.MetricWriter(wd, True)
    for step in (1, 2, 3):
        w.write(step, {"train/loss": float(step)})
    w.close()
    w = metric_log.MetricWriter(wd, True, resume_step=2)  # resumed from checkpoint 2
    w.write(3, {"train/loss": 30.0})
    w.write(3, {"train/loss": 31.0, "test/top1": 0.5})  # a re-report: only the new key
    w.close()
    rows = metric_log.read_rows(os.path.join(wd, "metrics.jsonl"))
    assert rows == [{"step": 1, "train/loss": 1.0}, {"step": 2, "train/loss": 2.0},
                    {"step": 3, "train/loss": 30.0}, {"step": 3, "test/top1": 0.5}]
    # TensorBoard (its own reader) shows the same values, as float32 scalars of the 'scalars'
    # plugin, as tf.summary.scalar writes them (the events are written without TensorFlow).
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    acc = event_accumulator.EventAccumulator(os.path.join(wd, "tensorboard"),
                                             size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    seen = {tag: [(e.step, tensor_util.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]
            for tag in acc.Tags()["tensors"]}
    assert seen == {"train/loss": [(1, 1.0), (2, 2.0), (3, 30.0)], "test/top1": [(3, 0.5)]}
    assert all(v.dtype == np.float32 and v.shape == () for vals in seen.values() for _, v in vals)
    plugin = acc.SummaryMetadata("train/loss").plugin_data.plugin_name
    assert plugin == "scalars"


BAD_VALUES = {
    "schedule.base_lr": (-1.0, "base_lr"), "batch_size": (0, "batch_size must be >= 1"),
    "epochs": (-2.0, "epochs must be > 0"), "ema_decay": (1.5, "ema_decay must be in"),
    "label_smoothing": (1.0, "label_smoothing"), "optimizer.momentum": (1.2, "momentum"),
    "optimizer.weight_decay": (-0.1, "weight_decay"), "clip_grad_norm": (-1.0, "clip_grad_norm"),
    "keep_checkpoints": (0, "keep_checkpoints"), "log_every_steps": (0, "log_every_steps"),
    "eval_every_steps": (-1, "eval_every_steps"), "model.num_classes": (1, "at least|>= 2"),
    "model.name": ("resnet9000", "not a registered model"), "dtype": ("fp32", "dtype"),
    "schedule.warmup_steps": (-5, "warmup_steps"), "pruning.target_sparsity": (1.0, "sparsity"),
}


@pytest.mark.parametrize("key", sorted(BAD_VALUES))
def test_config_check_refuses_each_bad_value(key):
    c = fakes.tiny_config(total_steps=10)
    value, words = BAD_VALUES[key]
    with c.unlocked():
        if key == "epochs":
            c.total_steps = None
        parent, _, leaf = key.rpartition(".")
        (c[parent] if parent else c)[leaf] = value
    with pytest.raises(ValueError, match=words):
        config_lib.check(c)


def test_check_data_refuses_one_class_and_a_batch_larger_than_the_data():
    c = fakes.tiny_config(total_steps=10, batch_size=64)
    info = fakes.Info(1, ["only"], 100, (8, 8, 1))
    with pytest.raises(ValueError, match=r"1 class\(es\) \(\['only'\]\).*at least 2"):
        config_lib.check_data(c, info)
    with pytest.raises(ValueError, match=r"larger than the 40 training examples"):
        config_lib.check_data(c, fakes.Info(2, ["a", "b"], 40, (8, 8, 1)))
    config_lib.check_data(c, fakes.Info(2, ["a", "b"], 64, (8, 8, 1)))


def test_stop_signals_record_the_first_signal_and_restore_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with preemption.StopSignals() as s:
        assert s.agreed(1) is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert s.agreed(2) == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before
    assert preemption.exit_status("SIGTERM") == 143 and preemption.exit_status("SIGINT") == 130


def test_roll_call_joins_and_names_the_missing(unused_port_pair):
    address = f"127.0.0.1:{unused_port_pair}"
    t = threading.Thread(target=rendezvous.join, args=(address, 2, 1, 20.0))
    t.start()
    rendezvous.join(address, 2, 0, 20.0)
    t.join()
    with pytest.raises(rendezvous.JoinTimeoutError, match=r"process id\(s\) \[1, 2\] of 3"):
        rendezvous.join(address, 3, 0, 0.5)
    with pytest.raises(ValueError, match="HOST:PORT"):
        rendezvous.join("nohostport", 2, 0, 1.0)


@pytest.fixture
def unused_port_pair():
    from tests.reliability.harness import free_port_pair

    return free_port_pair()
