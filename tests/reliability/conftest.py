"""One finished reference run of the default job, shared by every reliability test."""

import os
import shutil

import pytest

from tests.reliability import harness


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory) -> str:
    """Workdir of an uninterrupted run of ``harness.JOB`` (read-only: copy it to change it)."""
    wd = str(tmp_path_factory.mktemp("reference") / "run")
    result = harness.run(wd)
    assert result.returncode == 0, result.stderr[-3000:]
    assert harness.checkpoint_steps(wd) == [10, 20, 30]
    return wd


@pytest.fixture
def copy_of(tmp_path):
    def copy(workdir: str) -> str:
        dst = str(tmp_path / os.path.basename(workdir))
        shutil.copytree(workdir, dst)
        return dst

    return copy
