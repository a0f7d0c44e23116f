"""Bad command lines get one ``error:`` line and exit status 2, before any trial runs."""

import os
import subprocess
import sys

import pytest

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "mnist5k_lenet.py")
OK = ["--workdir=W", "--trials=2", "--space=schedule.base_lr=loguniform(1e-4,1e-1)"]


@pytest.mark.parametrize("args, message", [
    ([f"--config={CONFIG}", *OK, "--config.schedule.base_lrr=0.1"],
     "Did you mean --config.schedule.base_lr"),
    ([f"--config={CONFIG}", *OK, "--space=optimizer.weight_decay=loguniform(0,1)"],
     "loguniform needs 0 < low"),
    ([f"--config={CONFIG}", *OK[:2], "--space=x=uniform(0,1)"], "Unknown config key 'x'"),
    ([f"--config={CONFIG}", *OK, "--sampler=bayes"], "--sampler"),
    ([f"--config={CONFIG}", *OK[::2]], "--trials is required"),
    (["--config=missing.py", *OK], "config file 'missing.py' not found"),
])
def test_bad_input_is_one_error_line(tmp_path, args, message):
    r = subprocess.run([sys.executable, "-m", "jaxvision.sweep", *args], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    errors = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert len(errors) == 1 and message in errors[0], r.stderr[-2000:]
    assert not (tmp_path / "W" / "study.db").exists()  # nothing started
