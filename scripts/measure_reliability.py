"""Repeat the reliability cases of issue 12 on the real command line and print one row per kind.

  nice python scripts/measure_reliability.py --repeats 5 [--total 30 --every 10] [--only KIND ...]

(from the repo root; about an hour on a shared 2-core machine). Every run is the default job
(``tests/reliability/harness.py``) shortened to ``--total`` steps with a checkpoint every
``--every``. Rows read like ``SIGTERM: 5/5 saved at the signalled step, 5/5 bit-identical``:

* signals: the run is frozen once it has logged step k (k spread over the run), signalled, and
  continued; "saved at the signalled step" means exit 128+N, no traceback, and the newest
  checkpoint is of step k or k+1 (the step in flight) with nothing run after it. The rerun of the
  same command is compared bit for bit with one uninterrupted reference run.
* damaged newest checkpoint (each kind of ``DAMAGE``): reported in one line, moved aside, and the
  rerun resumed from the previous checkpoint ends bit-identical to the reference.
* disk full, concurrent runs, changed data, a lone multi-host process, SIGTERM to one of two
  processes: the test of that kind in ``tests/reliability`` repeated; a row counts the passes.

Not run in CI. Rows are printed (and flushed) as each kind finishes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.reliability import harness, test_data_identity, test_multihost  # noqa: E402
from tests.reliability.test_checkpoint_integrity import DAMAGE  # noqa: E402


def _signal_case(root: str, ref: str, job: list[str], total: int, sig, at: int) -> tuple[bool, bool]:
    wd = tempfile.mkdtemp(dir=root)
    proc = harness.start(wd, job=job)
    harness.wait_for_step(proc, wd, at)
    proc.send_signal(signal.SIGSTOP)  # freeze it to read exactly where the signal lands
    seen = max(harness.logged_steps(wd))
    proc.send_signal(sig)
    proc.send_signal(signal.SIGCONT)
    rc, _, err = harness.finish(proc)
    steps = harness.checkpoint_steps(wd)
    saved = (rc == 128 + sig and "Traceback" not in err and bool(steps)
             and steps[-1] in (seen, seen + 1) and max(harness.logged_steps(wd)) == steps[-1])
    ok = harness.run(wd, job=job).returncode == 0 and harness.bit_identical(wd, ref, total)
    shutil.rmtree(wd, ignore_errors=True)
    return saved, ok


def _damage_case(root: str, ref: str, job: list[str], kind: str) -> tuple[bool, bool]:
    wd = os.path.join(tempfile.mkdtemp(dir=root), "run")
    shutil.copytree(ref, wd)
    newest = harness.checkpoint_steps(wd)[-1]
    DAMAGE[kind](os.path.join(wd, "checkpoints", str(newest)))
    result = harness.run(wd, job=job)
    reported = (result.returncode == 0 and "Traceback" not in result.stderr
                and sum("is damaged" in x for x in result.stderr.splitlines()) == 1
                and os.path.isdir(os.path.join(wd, "checkpoints_damaged", str(newest))))
    ok = reported and harness.bit_identical(wd, ref, newest)
    shutil.rmtree(os.path.dirname(wd), ignore_errors=True)
    return reported, ok


def _disk_full_case(root: str, job: list[str], every: int) -> int:
    """One line naming the workdir, the free space and the intact previous checkpoint; exit 1.
    Returns the last step run (the save of step 2 * every failed)."""
    from jaxvision.training import checkpoints

    with harness.tmpfs(tempfile.mkdtemp(dir=root), "1200k") as mnt:  # one checkpoint, not two
        wd = os.path.join(mnt, "run")
        line = harness.assert_one_error(harness.run(wd, job=job), status=1)
        assert f"saving the checkpoint of step {2 * every}" in line and wd in line, line
        assert f"MiB free there; checkpoint {every} is intact" in line, line
        stopped = max(harness.logged_steps(wd))
        assert stopped < 3 * every, f"reported only at step {stopped}"  # before the next save
        assert checkpoints.load_run(wd).step == every
        return stopped


def _concurrent_case(root: str, ref: str, job: list[str], total: int) -> None:
    """A second run on a busy workdir is refused naming the holder; after the holder is killed
    (-9) its lock is taken over with a warning and the run ends bit-identical."""
    wd = tempfile.mkdtemp(dir=root)
    first = harness.start(wd, job=job)
    harness.wait_for_step(first, wd, 2)
    line = harness.assert_one_error(harness.run(wd, job=job))
    assert f"pid {first.pid}" in line, line
    first.kill()
    first.wait()
    taken = harness.run(wd, job=job)
    assert taken.returncode == 0 and "taking over the lock" in taken.stderr, taken.stderr[-2000:]
    assert harness.bit_identical(wd, ref, total)


def _repeat(name: str, what: str, repeats: int, case) -> None:
    passed, notes, values = 0, [], []
    for _ in range(repeats):
        try:
            values.append(case())
            passed += 1
        except Exception as e:  # noqa: BLE001 - AssertionError and any failure count as failed
            notes.append(traceback.format_exception_only(e)[-1].strip()[:200])
    values = [v for v in values if v is not None]
    tail = (f" ({values})" if values else "") + (f" (failures: {notes})" if notes else "")
    print(f"{name}: {passed}/{repeats} {what}{tail}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--total", type=int, default=30, help="steps of every run")
    p.add_argument("--every", type=int, default=10, help="checkpoint interval")
    p.add_argument("--only", nargs="*", default=None,
                   help="kinds to run: signals damage disk_full concurrent data multihost")
    args = p.parse_args()
    n, total, every = args.repeats, args.total, args.every
    kinds = set(args.only or ["signals", "damage", "disk_full", "concurrent", "data",
                              "multihost"])
    job = harness.job(total, every)
    root = tempfile.mkdtemp(prefix="jv_reliability_")
    ref = os.path.join(root, "reference")
    t0 = time.monotonic()
    assert harness.run(ref, job=job).returncode == 0
    if "signals" in kinds:
        at = [2 + (total - 4) * i // max(1, n - 1) for i in range(n)]  # spread over the run
        for sig in (signal.SIGTERM, signal.SIGINT):
            res = [_signal_case(root, ref, job, total, sig, k) for k in at]
            print(f"{signal.Signals(sig).name}: {sum(r[0] for r in res)}/{n} saved at the "
                  f"signalled step, {sum(r[1] for r in res)}/{n} bit-identical "
                  f"(signalled after steps {at})", flush=True)
    if "damage" in kinds:
        for kind in sorted(DAMAGE):
            res = [_damage_case(root, ref, job, kind) for _ in range(n)]
            print(f"damaged newest checkpoint, {kind}: {sum(r[0] for r in res)}/{n} reported "
                  f"and moved aside, {sum(r[1] for r in res)}/{n} resumed from the previous one "
                  "bit-identical", flush=True)
    if "disk_full" in kinds:
        _repeat("disk full (1.2 MB tmpfs)", "reported before the next save in one line (workdir, "
                "free space, previous checkpoint intact and loadable), exit 1, no traceback; "
                "last steps run", n,
                lambda: _disk_full_case(root, job, every))
    if "concurrent" in kinds:
        _repeat("concurrent runs", "second run refused naming the holder's pid; after kill -9 the "
                "lock taken over with a warning and the run ended bit-identical", n,
                lambda: _concurrent_case(root, ref, job, total))
    if "data" in kinds:
        _repeat("changed data (class renamed; file deleted)", "resume refused in one line saying "
                "what changed, nothing written", n,
                lambda: test_data_identity.test_changed_data_is_refused_with_what_changed(
                    _fresh(root)))
    if "multihost" in kinds:
        for pid in (0, 1):
            _repeat(f"lone multi-host process {pid} (3 s join timeout)", "failed in one line "
                    "naming the address and the missing process(es), exit 1", n,
                    lambda pid=pid: test_multihost.test_lone_process_fails_within_the_timeout(
                        pid, _fresh(root)))
        _repeat("SIGTERM to one of two processes", "both stopped at the same agreed step with exit "
                "143 and the one line, checkpoint of that step, resumed pair bit-identical to an "
                "uninterrupted pair", n,
                lambda: test_multihost.test_sigterm_to_one_process_stops_both_at_one_step_and_resumes_bit_identical(  # noqa: E501
                    _fresh(root)))
    print(f"({time.monotonic() - t0:.0f} s wall)", flush=True)
    with contextlib.suppress(OSError):
        shutil.rmtree(root)


def _fresh(root: str):
    import pathlib

    return pathlib.Path(tempfile.mkdtemp(dir=root))


if __name__ == "__main__":
    main()
