"""With several processes the stop decision is exchanged once per ``sync_every`` steps, on the
same steps everywhere, also when one call covers several steps (device_data chunks)."""

import numpy as np
import pytest
from jax.experimental import multihost_utils

from jaxvision.training import preemption


@pytest.fixture
def exchanges(monkeypatch):
    """Steps at which StopSignals all-gathers (a one-process stand-in for the collective)."""
    calls = []

    def allgather(x):
        calls.append(x)
        return np.asarray([x])

    monkeypatch.setattr(multihost_utils, "process_allgather", allgather)
    return calls


def _exchange_steps(steps, sync_every, calls, requested=None):
    s = preemption.StopSignals(sync_every=sync_every)
    s._multi, s.requested = True, requested
    at, answers = [], []
    for step in steps:
        before = len(calls)
        answers.append(s.agreed(step))
        if len(calls) > before:
            at.append(step)
    return at, answers


@pytest.mark.parametrize("steps, sync_every, expected", [
    (range(1, 11), 3, [3, 6, 9]),  # one step per call: the multiples
    (range(8, 14), 5, [10]),  # resumed at step 7
    ([4, 8, 12, 16, 20, 24], 10, [12, 20]),  # chunks of 4 skip 10: the first call past it
    ([7, 14, 21, 28], 10, [14, 21]),  # 28 is in the same block of 10 as 21
])
def test_exchange_steps(steps, sync_every, expected, exchanges):
    assert _exchange_steps(steps, sync_every, exchanges)[0] == expected


def test_a_request_is_answered_at_the_next_exchange_only(exchanges):
    import signal

    _, answers = _exchange_steps(range(1, 7), 3, exchanges, requested=signal.SIGTERM)
    assert answers == [None, None, "SIGTERM", None, None, "SIGTERM"]
