"""What a resumed run checks and says before it trains: the batch size of checkpoints written
before it was recorded in their metadata (read from the run's config.json), and an over-finished
run (checkpoint step >= this config's total_steps) named as such, never "step 125 of 124"."""

import json
import types

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from jaxvision.training import loop


def _job(tmp_path, batch_size, config_json=None):
    if config_json is not None:
        (tmp_path / "config.json").write_text(config_json)
    config = ml_collections.ConfigDict({"batch_size": batch_size, "model": {"name": "lenet5"}})
    return types.SimpleNamespace(config=config, num_classes=10, workdir=str(tmp_path),
                                 data_id=None)


def _check(job, meta):
    tree = {"w": jax.ShapeDtypeStruct((3,), jnp.float32)}
    loop._check_same_run(job, meta, job.workdir + "/checkpoints/8", tree, tree)


OLD_META = {"model": "lenet5", "num_classes": 10}  # no "batch_size": before it was recorded


def test_old_checkpoint_batch_size_read_from_config_json(tmp_path):
    job = _job(tmp_path, 32, json.dumps({"batch_size": 64, "total_steps": 100}))
    with pytest.raises(loop.DataChangedError, match="trained with batch_size 64, this config "
                                                    "has 32.*--config.batch_size=64"):
        _check(job, OLD_META)
    _check(_job(tmp_path, 64), OLD_META)  # the same batch size resumes


@pytest.mark.parametrize("config_json", [None, "{not json", json.dumps({"total_steps": 5}),
                                         json.dumps({"batch_size": "64"}), "[1, 2]"])
def test_old_checkpoint_without_a_readable_config_json_resumes(tmp_path, config_json):
    # Nothing recorded anywhere: nothing to compare, as before (no false refusal).
    _check(_job(tmp_path, 32, config_json), OLD_META)


def test_recorded_batch_size_wins_over_config_json(tmp_path):
    job = _job(tmp_path, 64, json.dumps({"batch_size": 64}))
    with pytest.raises(loop.DataChangedError, match="trained with batch_size 16"):
        _check(job, {**OLD_META, "batch_size": 16})


def test_resume_message_never_says_step_past_total():
    assert loop._resume_message("w/8", 8, 124) == "Resuming from w/8 (step 8 of 124)."
    done = loop._resume_message("w/124", 124, 124)
    assert "last step" in done and "no training left" in done and "of 124" not in done
    over = loop._resume_message("w/125", 125, 124)
    assert "past this config's total_steps 124" in over and "no training left" in over
