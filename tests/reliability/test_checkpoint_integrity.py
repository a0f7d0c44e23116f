"""Damaged checkpoints are reported, moved aside and skipped; the run, load_run (evaluate, predict,
explain) and a restart from scratch all end on the newest good checkpoint or bit-identical."""

import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

from jaxvision.training import checkpoints, integrity
from tests.reliability import harness

pytestmark = pytest.mark.slow


def _largest_data_file(step_dir: str) -> str:
    files = glob.glob(os.path.join(step_dir, "state", "ocdbt.process_0", "d", "*"))
    return max(files, key=os.path.getsize)


def _truncate(step_dir):
    path = _largest_data_file(step_dir)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 3)


def _flip_bytes(step_dir):
    path = _largest_data_file(step_dir)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        chunk = bytearray(f.read(64))
        f.seek(-len(chunk), os.SEEK_CUR)
        f.write(bytes(b ^ 0xFF for b in chunk))


def _delete_state_metadata(step_dir):
    os.remove(os.path.join(step_dir, "state", "_METADATA"))


def _delete_commit_marker(step_dir):
    os.remove(os.path.join(step_dir, "commit_success.txt"))


def _empty_step_folder(step_dir):
    for name in os.listdir(step_dir):
        path = os.path.join(step_dir, name)
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def _delete_data_files(step_dir):
    for path in glob.glob(os.path.join(step_dir, "state", "ocdbt.process_0", "d", "*")):
        os.remove(path)


def _other_steps_arrays(step_dir):
    """Readable arrays that are not the ones saved: the oldest checkpoint's state under this
    step's meta (only the digest can tell)."""
    parent = os.path.dirname(step_dir)
    src = os.path.join(parent, str(min(int(s) for s in os.listdir(parent) if s.isdigit())), "state")
    shutil.rmtree(os.path.join(step_dir, "state"))
    shutil.copytree(src, os.path.join(step_dir, "state"))


DAMAGE = {"truncated data file": _truncate, "data files deleted": _delete_data_files, "64 bytes flipped": _flip_bytes,
          "state/_METADATA deleted": _delete_state_metadata,
          "no commit marker": _delete_commit_marker, "step folder emptied": _empty_step_folder,
          "other arrays (digest mismatch)": _other_steps_arrays}


# load_run (what evaluate, predict, explain and export call) on each damaged copy, in a fresh
# process as a user's command would: its stderr must hold the warnings and nothing else.
_LOAD_EACH = """
import json, sys
from jaxvision.training import checkpoints
out = {}
for wd in sys.argv[1:]:
    try:
        checkpoints.load_run(wd, 30)
        explicit = "loaded"
    except FileNotFoundError as e:  # an explicit damaged step is refused, not replaced
        explicit = str(e)
    out[wd] = [checkpoints.load_run(wd, "latest").step, explicit]
print(json.dumps(out))
"""


def test_load_run_latest_skips_each_kind_of_damage_without_a_traceback(reference_run, tmp_path):
    copies = {}
    for i, kind in enumerate(sorted(DAMAGE)):
        copies[kind] = str(tmp_path / f"run{i}")
        shutil.copytree(reference_run, copies[kind])
        DAMAGE[kind](os.path.join(copies[kind], "checkpoints", "30"))
    result = subprocess.run([sys.executable, "-c", _LOAD_EACH, *copies.values()], env=harness.env(),
                            capture_output=True, text=True, timeout=harness.TIMEOUT_S, cwd=harness.REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "Event loop" not in result.stderr, result.stderr
    loaded = json.loads(result.stdout.splitlines()[-1])
    for kind, wd in copies.items():
        latest, explicit = loaded[wd]
        assert latest == 20, kind
        assert "damaged: 30 (" in explicit, (kind, explicit)
        # One line for 'latest', naming the checkpoint used instead; the explicit step is refused
        # by the error alone. Readers move nothing.
        skipped = [x for x in result.stderr.splitlines() if f"skipping {wd}/checkpoints/" in x]
        assert len(skipped) == 1 and f"{wd}/checkpoints/30: " in skipped[0], kind
        assert skipped[0].endswith("; using checkpoint 20 instead"), skipped[0]
        assert harness.checkpoint_steps(wd) == [10, 20, 30] and not integrity.damaged_steps(wd)
    for kind in ("truncated data file", "data files deleted"):  # TensorStore's read error, named
        line = next(x for x in result.stderr.splitlines() if f"skipping {copies[kind]}/" in x)
        assert "data files missing or unreadable (" in line and "Encountered" not in line, line
    assert "Exception ignored" not in result.stderr and "Task was destroyed" not in result.stderr


def test_train_moves_damaged_aside_and_resumes_bit_identical(reference_run, copy_of):
    wd = copy_of(reference_run)
    _other_steps_arrays(os.path.join(wd, "checkpoints", "30"))
    _truncate(os.path.join(wd, "checkpoints", "20"))
    with open(os.path.join(wd, "lock"), "w") as f:  # left by a run killed with kill -9
        f.write('{"host": "elsewhere", "pid": 999999, "since": 0}')
    result = harness.run(wd)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    damaged = [x for x in result.stderr.splitlines() if "is damaged" in x]
    assert len(damaged) == 2 and "digest" in damaged[0] and "moved aside" in damaged[1]
    assert "taking over the lock" in result.stderr and "pid 999999" in result.stderr
    assert integrity.damaged_steps(wd) == ["20", "30"]
    assert harness.checkpoint_steps(wd) == [10, 20, 30]
    assert harness.bit_identical(wd, reference_run)


def test_all_damaged_asks_for_restart_from_scratch(reference_run, copy_of):
    wd = copy_of(reference_run)
    for step in (10, 20, 30):
        _delete_state_metadata(os.path.join(wd, "checkpoints", str(step)))
    refused = harness.run(wd)
    line = harness.assert_one_error(refused)
    assert "every checkpoint" in line and "--restart_from_scratch" in line
    assert integrity.damaged_steps(wd) == ["10", "20", "30"]
    with pytest.raises(FileNotFoundError) as e:  # what evaluate/predict/explain/export then say
        checkpoints.load_run(wd)
    assert "all 3 damaged" in str(e.value) and f"{wd}/checkpoints_damaged" in str(e.value)
    assert "--restart_from_scratch" in str(e.value)
    restarted = harness.run(wd, "--restart_from_scratch")
    assert restarted.returncode == 0 and "Traceback" not in restarted.stderr, restarted.stderr[-3000:]
    assert harness.bit_identical(wd, reference_run)


def test_resuming_removes_folders_of_unfinished_saves(reference_run, copy_of):
    """A second Ctrl-C or kill -9 during a save leaves Orbax's temporary folder; readers keep it,
    the next run in the workdir (holding its lock) removes it."""
    wd = copy_of(reference_run)
    ckpt = os.path.join(wd, "checkpoints")
    tmp = [os.path.join(ckpt, "40.orbax-checkpoint-tmp"),
           os.path.join(ckpt, "40.orbax-checkpoint-tmp-1764541200")]
    for path in tmp:
        shutil.copytree(os.path.join(ckpt, "30", "state"), os.path.join(path, "state"))
    assert checkpoints.load_run(wd).step == 30
    assert all(os.path.isdir(p) for p in tmp)  # a reader changes nothing
    result = harness.run(wd)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(os.listdir(ckpt)) == ["10", "20", "30"]
