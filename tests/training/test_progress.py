"""The progress bar advances with finished steps (arrays ready), not dispatched ones."""

from jaxvision.training.progress import StepProgress


class _Pending:
    def __init__(self):
        self.ready = False

    def is_ready(self):
        return self.ready


def test_bar_counts_finished_steps_only():
    progress = StepProgress(total=10, initial=2)
    steps = [_Pending() for _ in range(4)]
    for i, m in enumerate(steps, start=3):
        progress.dispatched(i, {"loss": m})
    assert progress.bar is None  # four steps queued, none finished: no speed to show yet
    steps[0].ready = steps[1].ready = True
    progress.dispatched(7, {"loss": _Pending()})
    assert progress.bar.n == 4  # steps 3 and 4 finished; 5 is not, so 6 cannot count yet
    progress.synced(7)  # the host fetched step 7's metrics: everything up to it is done
    assert progress.bar.n == 7
    progress.close()


def test_disabled_bar_does_nothing():
    progress = StepProgress(total=5, initial=0, enabled=False)
    progress.dispatched(1, {"loss": _Pending()})
    progress.synced(1)
    progress.set_postfix(loss="1")
    progress.close()
    assert progress.bar is None
