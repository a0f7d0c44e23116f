"""`python -m jaxvision.predict` bad input: one `error: ...` line on stderr, exit status 2, no
usage dump or traceback (regression: --top_k 0 raised a ValueError traceback; a --checkpoint
typo and no files printed the whole --help with status 1; an empty folder said "none of the
given files could be read")."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("args, message", [
    (["--top_k=0", "x.png"], "error: flag --top_k=0: 0 is not a positive integer"),
    (["--batch_size=0", "x.png"], "error: flag --batch_size=0: 0 is not a positive integer"),
    ([], "error: give at least one image file or folder"),
    (["{empty}"], "error: no image files in folder"),
])
def test_bad_input_is_one_error_line_and_status_2(tmp_path, args, message):
    empty = tmp_path / "empty"
    (empty / ".hidden").mkdir(parents=True)
    (empty / ".hidden" / "a.png").write_bytes(b"x")
    args = [a.format(empty=empty) for a in args]
    proc = subprocess.run([sys.executable, "-m", "jaxvision.predict",
                           f"--workdir={tmp_path / 'no_run'}", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "--workdir:" not in proc.stderr
