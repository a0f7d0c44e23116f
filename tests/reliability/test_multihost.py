"""A multi-host process whose peers never come fails within --join_timeout_s with one line naming
the address and the missing process ids."""

import socket
import time

import pytest

from tests.reliability import harness

pytestmark = pytest.mark.slow


def _free_port_pair() -> int:
    """A port P with P and P+1 free on 127.0.0.1 (coordinator and roll call)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no free port pair")


@pytest.mark.parametrize("process_id", [0, 1])
def test_lone_process_fails_within_the_timeout(process_id, tmp_path):
    port = _free_port_pair()
    address = f"127.0.0.1:{port}"
    t0 = time.monotonic()
    result = harness.run(str(tmp_path / "run"), f"--coordinator_address={address}",
                         "--num_processes=2", f"--process_id={process_id}", "--join_timeout_s=3",
                         timeout=120)
    took = time.monotonic() - t0
    line = harness.assert_one_error(result, status=1)
    assert address in line, line
    if process_id == 0:
        assert "process id(s) [1] of 2 did not join within 3 s" in line, line
    else:
        assert "could not reach the coordinator" in line, line
    assert took < 100  # the 3 s roll call, plus start-up on a loaded 2-core machine
