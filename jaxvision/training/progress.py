"""The training progress bar: counts steps the devices have finished, not steps dispatched.

``train_step`` returns as soon as the step is queued (JAX dispatches asynchronously), so a bar
advanced at dispatch runs ahead of the devices, then stalls at the next host sync ("50/75" frozen)
and its ETA swings. Here every dispatched step's metrics are kept, and the bar advances to the
last step whose metrics are ready (``jax.Array.is_ready()``: a non-blocking query, no host sync).
The ETA is tqdm's, from the smoothed rate of finished steps.
"""

from __future__ import annotations

import collections
import sys
from typing import Any

import jax

# tqdm's exponential moving average factor for the speed (tqdm's default; 0 = average since the
# start, 1 = last interval only, which jumps).
SMOOTHING = 0.3


class StepProgress:
    """A tqdm bar over training steps on process 0 (``enabled=False``: every method is a no-op).

    ``dispatched(step, metrics)`` after each ``train_step`` call; ``synced(step)`` once the host
    has fetched that step's metrics (everything up to it is finished); ``set_postfix``,
    ``write`` (to stderr) and ``close`` as tqdm's. The bar starts at the first finished step, so
    the compilation of the first step does not enter the speed and the ETA. Measured on the
    default recipe, 400 steps on the shared 2-core CPU: at 12% the ETA said 0:37 (end at 42 s)
    and the bar ended at 49 s (a 5 s evaluation included), 13% off; counting the compile step,
    the same run said 1:00 (end at 69 s) for an end at 45 s, 53% off."""

    def __init__(self, total: int, initial: int, *, enabled: bool = True):
        self.bar = None
        self.total, self.enabled = total, enabled
        self.done = initial
        self._pending: collections.deque[tuple[int, Any]] = collections.deque()

    def dispatched(self, step: int, metrics: Any) -> None:
        if not self.enabled:
            return
        leaves = jax.tree.leaves(metrics)
        self._pending.append((step, leaves[0] if leaves else None))
        while self._pending and _ready(self._pending[0][1]):
            self._advance(self._pending.popleft()[0])

    def synced(self, step: int) -> None:
        if not self.enabled:
            return
        while self._pending and self._pending[0][0] <= step:
            self._pending.popleft()
        self._advance(step)

    def _advance(self, step: int) -> None:
        if step <= self.done:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=step, desc="train", unit="step",
                            dynamic_ncols=True, mininterval=1.0, smoothing=SMOOTHING,
                            file=sys.stderr)
        else:
            self.bar.update(step - self.done)
        self.done = step

    def set_postfix(self, **kwargs) -> None:
        if self.bar is not None:
            self.bar.set_postfix(**kwargs)

    def write(self, message: str) -> None:
        if self.enabled:
            from tqdm.auto import tqdm

            tqdm.write(message, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _ready(x) -> bool:
    if x is None or not hasattr(x, "is_ready"):
        return True
    return x.is_ready()
