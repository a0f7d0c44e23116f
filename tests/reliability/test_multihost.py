"""A multi-host process whose peers never come fails within --join_timeout_s with one line naming
the address and the missing process ids."""

import signal
import time

import pytest

from tests.reliability import harness

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("process_id", [0, 1])
def test_lone_process_fails_within_the_timeout(process_id, tmp_path):
    port = harness.free_port_pair()
    address = f"127.0.0.1:{port}"
    t0 = time.monotonic()
    result = harness.run(str(tmp_path / "run"), f"--coordinator_address={address}",
                         "--num_processes=2", f"--process_id={process_id}", "--join_timeout_s=3")
    took = time.monotonic() - t0
    line = harness.assert_one_error(result, status=1)
    assert address in line, line
    if process_id == 0:
        assert "process id(s) [1] of 2 did not join within 3 s" in line, line
    else:
        assert "could not reach the coordinator" in line, line
    assert took < harness.TIMEOUT_S / 3  # the 3 s roll call, plus start-up on a loaded machine


# 2 processes x 1 device; every process checks for a stop request every 3 steps.
PAIR_TOTAL, PAIR_SYNC = 12, 3
PAIR_JOB = harness.job(total=PAIR_TOTAL, every=PAIR_TOTAL) + [
    f"--config.preemption_sync_every_steps={PAIR_SYNC}"]


def test_sigterm_to_one_process_stops_both_at_one_step_and_resumes_bit_identical(tmp_path):
    ref, wd = str(tmp_path / "reference"), str(tmp_path / "run")
    # The uninterrupted pair runs meanwhile: start-up dominates, and it is the same on 2 cores.
    reference = harness.start_processes(ref, 2, job=PAIR_JOB)
    pair = harness.start_processes(wd, 2, job=PAIR_JOB)
    harness.wait_for_step(pair[0], wd, 1)  # process 0 writes the metrics
    for p in pair:  # freeze both so the signal lands well before the last agreement step
        p.send_signal(signal.SIGSTOP)
    seen = max(harness.logged_steps(wd))
    pair[1].send_signal(signal.SIGTERM)  # only process 1 is told, as a scheduler might do
    for p in pair:
        p.send_signal(signal.SIGCONT)
    stopped = harness.finish_all(pair)
    steps = []
    for rc, _, err in stopped:
        assert rc == 128 + signal.SIGTERM and "Traceback" not in err, (rc, err[-3000:])
        steps.append(harness.stopped_step(err, "SIGTERM"))
    # One collective decision: the same step on both, the first agreement step after the signal.
    assert steps[0] == steps[1] and steps[0] % PAIR_SYNC == 0
    assert seen <= steps[0] < min(seen + 2 * PAIR_SYNC, PAIR_TOTAL)
    assert harness.checkpoint_steps(wd) == [steps[0]]
    assert max(harness.logged_steps(wd)) == steps[0]

    for rc, _, err in harness.finish_all(reference) + harness.finish_all(
            harness.start_processes(wd, 2, job=PAIR_JOB)):
        assert rc == 0, err[-3000:]
    assert harness.bit_identical(wd, ref, step=PAIR_TOTAL)


def test_jax_backend_is_left_to_jax_distributed_when_it_will_start(monkeypatch):
    """The CLI initialises JAX early only when no jax.distributed.initialize is coming (else that
    call fails: 'must be called before any JAX calls')."""
    from jaxvision.training import distributed

    for name in ("SLURM_JOB_ID", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "JAX_COORDINATOR_ADDRESS",
                 "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.will_initialize(["train", "--workdir=w"])
    assert distributed.will_initialize(["train", "--num_processes=2", "--process_id", "1"])
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_NTASKS", "1")  # a one-task job is a single process
    assert not distributed.will_initialize(["train"])
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert distributed.will_initialize(["train"])
