"""Every kind of user mistake: one ``error:`` line on stderr, exit status 2, no traceback, and
nothing trained. Each case names the mistake and how to fix it."""

import os

import pytest

from tests.reliability import harness

pytestmark = pytest.mark.slow

JOB = harness.JOB
RECIPE = JOB[1]

# (case, argv after the job's own flags or replacing them, words the one line must hold)
CASES = {
    "negative learning rate": (["--config.schedule.base_lr=-1.0"], "base_lr must be a finite number > 0"),
    "batch larger than the data": (["--config.batch_size=10000"],
                                   "larger than the 4000 training examples"),
    "unknown model": (["--config.model.name=resnet9000"], "is not a registered model"),
    "zero steps": (["--config.total_steps=0"], "total_steps must be >= 1"),
    "unknown flag": (["--workdirr=/tmp/x"], "Unknown flag --workdirr. Did you mean --workdir?"),
    "value of the wrong type": (["--config.batch_size=abc"], "batch_size"),
    "unknown config key": (["--config.optimizer.nme=adamw"], "Did you mean --config.optimizer.name"),
    "unknown dataset": (["--config.data.name=no_such_dataset"], "Unknown dataset 'no_such_dataset'"),
    "mesh larger than the devices": (["--config.mesh.data=2"], "uses 2 devices, but there are 1"),
    "incomplete multi-host flags": (["--num_processes=2"], "needs all of --coordinator_address"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_flag_or_value(case, tmp_path):
    extra, words = CASES[case]
    wd = str(tmp_path / "run")
    line = harness.assert_one_error(harness.run(wd, *extra))
    assert words in line, line
    assert not os.path.exists(wd)  # a refused command leaves no workdir (nor lock) behind


def test_refused_config_keeps_an_existing_workdir(reference_run, copy_of):
    wd = copy_of(reference_run)
    before = sorted(os.listdir(wd))
    line = harness.assert_one_error(harness.run(wd, "--config.mesh.data=2"))
    assert "uses 2 devices" in line, line
    assert sorted(os.listdir(wd)) == before
    assert harness.checkpoint_steps(wd) == [10, 20, 30]


def test_config_file_with_a_syntax_error(tmp_path):
    recipe = tmp_path / "broken.py"
    recipe.write_text("def get_config(:\n    pass\n")
    line = harness.assert_one_error(harness.run(str(tmp_path / "run"), job=["--config", str(recipe)]))
    assert "syntax error at line 1" in line and "broken.py" in line, line


def test_missing_config_file(tmp_path):
    line = harness.assert_one_error(
        harness.run(str(tmp_path / "run"), job=["--config", str(tmp_path / "nope.py")]))
    assert "not found" in line, line


def test_workdir_that_is_a_file(tmp_path):
    wd = tmp_path / "file"
    wd.write_text("not a directory")
    line = harness.assert_one_error(harness.run(str(wd)))
    assert "is a file" in line, line


def test_init_from_a_checkpoints_folder_names_the_run_directory(tmp_path, reference_run):
    bad = os.path.join(reference_run, "checkpoints")
    line = harness.assert_one_error(harness.run(str(tmp_path / "run"), f"--config.init_from={bad}"))
    assert f"--config.init_from={reference_run}" in line, line
