"""Repeat the reliability cases of issue 12 on the real command line and print one row per kind.

  python scripts/measure_reliability.py --repeats 5        (from the repo root; ~15 min on 2 cores)

Rows read like ``SIGTERM: 5/5 saved at the signalled step, 5/5 bit-identical``: a signal is sent
once the run has logged step k (k varies over the repetitions), "saved at the signalled step"
means the checkpoint is of step k or k+1 (the step in flight) and nothing ran after it; the
resumed run is compared bit for bit with one uninterrupted reference run. Not run in CI.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.reliability import harness  # noqa: E402
from tests.reliability.test_checkpoint_integrity import DAMAGE  # noqa: E402


def _signal_case(root: str, ref: str, sig, at: int) -> tuple[bool, bool]:
    wd = tempfile.mkdtemp(dir=root)
    proc = harness.start(wd)
    harness.wait_for_step(proc, wd, at)
    proc.send_signal(signal.SIGSTOP)  # freeze it to read exactly where the signal lands
    seen = max(harness.logged_steps(wd))
    proc.send_signal(sig)
    proc.send_signal(signal.SIGCONT)
    rc, _, err = harness.finish(proc)
    steps = harness.checkpoint_steps(wd)
    saved = (rc == 128 + sig and "Traceback" not in err and bool(steps)
             and steps[-1] in (seen, seen + 1) and max(harness.logged_steps(wd)) == steps[-1])
    ok = harness.run(wd).returncode == 0 and harness.bit_identical(wd, ref)
    shutil.rmtree(wd, ignore_errors=True)
    return saved, ok


def _damage_case(root: str, ref: str, kind: str) -> tuple[bool, bool]:
    wd = os.path.join(tempfile.mkdtemp(dir=root), "run")
    shutil.copytree(ref, wd)
    DAMAGE[kind](os.path.join(wd, "checkpoints", "60"))
    result = harness.run(wd)
    reported = (result.returncode == 0 and "Traceback" not in result.stderr
                and sum("is damaged" in x for x in result.stderr.splitlines()) == 1
                and os.path.isdir(os.path.join(wd, "checkpoints_damaged", "60")))
    ok = reported and harness.bit_identical(wd, ref)
    shutil.rmtree(os.path.dirname(wd), ignore_errors=True)
    return reported, ok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    root = tempfile.mkdtemp(prefix="jv_reliability_")
    ref = os.path.join(root, "reference")
    assert harness.run(ref).returncode == 0
    at = [3 + 11 * i % 50 for i in range(args.repeats)]  # signal moments spread over the run
    for sig in (signal.SIGTERM, signal.SIGINT):
        res = [_signal_case(root, ref, sig, k) for k in at]
        print(f"{signal.Signals(sig).name}: {sum(r[0] for r in res)}/{len(res)} saved at the "
              f"signalled step, {sum(r[1] for r in res)}/{len(res)} bit-identical "
              f"(signalled after steps {at})", flush=True)
    for kind in sorted(DAMAGE):
        res = [_damage_case(root, ref, kind) for _ in range(max(1, args.repeats // 5))]
        print(f"damaged newest checkpoint, {kind}: {sum(r[0] for r in res)}/{len(res)} reported "
              f"and moved aside, {sum(r[1] for r in res)}/{len(res)} resumed from the previous "
              "one bit-identical", flush=True)
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
