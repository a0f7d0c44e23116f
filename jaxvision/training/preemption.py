"""Stopping a run cleanly on SIGTERM / SIGINT (preemption, Ctrl-C).

Cloud schedulers and SLURM send SIGTERM some seconds before they kill a job. While
:class:`StopSignals` is active, the first SIGTERM or SIGINT only records the request; the training
loop asks :meth:`StopSignals.agreed` after every step, finishes the step in flight, saves a
checkpoint of it and returns. A second SIGINT aborts at once (exit status 130), as a user pressing
Ctrl-C twice expects.

With several processes, a signal may reach only some of them, so stopping is a collective decision
(as Orbax's and big_vision's preemption checks are): every ``sync_every`` steps all processes
exchange their requests (one tiny all-gather) and all stop at that same step. Between those steps
no process waits on another, and on a single process the check is a Python flag read, no host sync.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import jax
import numpy as np

log = logging.getLogger("jaxvision.train")

_HANDLED = (signal.SIGTERM, signal.SIGINT)


def exit_status(signal_name: str) -> int:
    """The shell's status for a process ended by ``signal_name`` ('SIGTERM' -> 143): 128 + N."""
    return 128 + int(getattr(signal, signal_name))


class StopSignals:
    """Context manager: turns SIGTERM/SIGINT into a stop request the training loop polls.

    Installs handlers only in the main thread (Python allows no other); elsewhere (e.g. a sweep
    running trials in threads) it is inert and signals keep their default behaviour.
    """

    def __init__(self, *, sync_every: int = 10):
        self.sync_every = max(1, int(sync_every))
        self.requested: int | None = None  # signal number of the first request
        self._previous: dict = {}
        self._multi = jax.process_count() > 1
        self._last_step: int | None = None  # the step of the previous ``agreed`` call

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in _HANDLED:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        del frame
        if self.requested is not None and signum == signal.SIGINT:
            # Second Ctrl-C: the user does not want to wait for the checkpoint.
            print("aborted by a second SIGINT; the checkpoint of this stop may be incomplete "
                  "(the previous ones are kept)", file=sys.stderr, flush=True)
            os._exit(exit_status("SIGINT"))
        if self.requested is None:
            self.requested = signum
            log.warning("%s received: finishing the current step and saving a checkpoint "
                        "(press Ctrl-C again to abort at once)", signal.Signals(signum).name)

    def agreed(self, step: int) -> str | None:
        """The signal name ('SIGTERM', 'SIGINT') when every process should stop after ``step``.

        Single process: the local request. Several: the first request of any process, exchanged
        at the multiples of ``sync_every`` (the same steps on every process); when a call covers
        several steps, at the first call past each multiple.
        """
        if not self._multi:
            return signal.Signals(self.requested).name if self.requested is not None else None
        # Exchange whenever the steps since the last call passed a multiple of ``sync_every``:
        # with one step per call exactly at the multiples, and chunks of several steps per
        # dispatch (device_data) that skip them still sync. Every process sees the same steps,
        # so all join the same exchanges.
        previous = step - 1 if self._last_step is None else self._last_step
        self._last_step = step
        if step // self.sync_every == previous // self.sync_every:
            return None
        from jax.experimental import multihost_utils

        mine = np.int32(self.requested or 0)
        all_requests = np.asarray(multihost_utils.process_allgather(mine))
        asked = [int(r) for r in all_requests.reshape(-1) if r]
        return signal.Signals(min(asked)).name if asked else None
