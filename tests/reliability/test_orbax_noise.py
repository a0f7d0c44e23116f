"""The unraisable-exception hook drops exactly TensorStore's callback into an event loop Orbax has
closed (the noise after a failed save or a damaged read) and passes every other case on."""

import asyncio
import logging
import sys
import types

from jaxvision.training import checkpoints, orbax_noise  # noqa: F401 - installs the filters


def _unraisable(exc: BaseException, obj=None):
    return types.SimpleNamespace(exc_type=type(exc), exc_value=exc,
                                 exc_traceback=exc.__traceback__, err_msg=None, object=obj)


def _closed_loop_error() -> RuntimeError:
    """What TensorStore's completion callback gets from ``call_soon_threadsafe`` after Orbax's
    ``run_sync`` closed its loop."""
    loop = asyncio.new_event_loop()
    loop.close()
    try:
        loop.call_soon_threadsafe(print)
    except RuntimeError as e:
        return e
    raise AssertionError("a closed loop accepted a callback")


def _hook_calls(unraisable) -> list:
    seen = []
    orbax_noise._UnraisableFilter(seen.append)(unraisable)
    return seen


def test_closed_loop_callback_is_dropped():
    assert _hook_calls(_unraisable(_closed_loop_error())) == []


def test_other_unraisable_exceptions_reach_the_previous_hook():
    try:  # the same message raised by other code is not the closed-loop callback
        raise RuntimeError("Event loop is closed")
    except RuntimeError as e:
        own = e
    cases = [_unraisable(own), _unraisable(_closed_loop_error(), obj=object()),
             _unraisable(ValueError("boom"))]
    for case in cases:
        assert _hook_calls(case) == [case]


def test_install_is_idempotent_and_chains_the_previous_hook(monkeypatch):
    def previous(unraisable):
        pass

    monkeypatch.setattr(sys, "unraisablehook", previous)
    orbax_noise.install()
    orbax_noise.install()
    assert isinstance(sys.unraisablehook, orbax_noise._UnraisableFilter)
    assert sys.unraisablehook.previous is previous
    filters = [f for f in logging.getLogger("absl").filters
               if isinstance(f, orbax_noise.OrbaxLogFilter)]
    assert len(filters) == 1  # also installed by importing jaxvision.training.checkpoints
