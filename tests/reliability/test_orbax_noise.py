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


def _abandon_in_closed_loop(coro) -> None:
    """What Orbax's ``run_sync`` does to the sibling reads of a failed batch: the loop is closed
    with the task pending, and garbage collection then closes the coroutine."""
    import gc

    loop = asyncio.new_event_loop()
    task = loop.create_task(coro)
    loop.run_until_complete(asyncio.sleep(0))
    assert not task.done()
    loop.close()
    del task, coro
    gc.collect()


def _orbax_read(monkeypatch, tensorstore_read):
    """A factory of Orbax's own read coroutine of one shard, its TensorStore read replaced by
    ``tensorstore_read``."""
    import jax
    import numpy as np
    import tensorstore as ts
    from orbax.checkpoint._src.serialization import limits, serialization

    monkeypatch.setattr(serialization, "_read_shard", tensorstore_read)
    t = ts.open({"driver": "zarr", "kvstore": "memory://"}, create=True, shape=[4, 3],
                dtype=ts.float32).result()
    return lambda: serialization._read_array_index_and_device_put(
        [jax.devices()[0]], (slice(0, 4, 1), slice(0, 3, 1)), t, global_shape=(4, 3),
        new_shard_shape=(4, 3), dtype=np.float32, byte_limiter=limits.get_byte_limiter(),
        strict=True, dll=None, memory_kind=None)


# What TensorStore raises for a checkpoint whose data files were deleted.
_TS_ERROR = ('FAILED_PRECONDITION: Error reading "params.fc1.kernel/0.0" in OCDBT database: '
             "Truncated Zstd-compressed stream")


def test_abandoned_orbax_read_is_dropped(monkeypatch, caplog):
    async def read_in_flight(**_):
        await asyncio.get_running_loop().create_future()  # never completes: the loop closes first

    read = _orbax_read(monkeypatch, read_in_flight)
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", orbax_noise._UnraisableFilter(seen.append))
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        _abandon_in_closed_loop(read())
    assert seen == []
    assert "Task was destroyed" not in caplog.text
    # Unfiltered, the same abandoned read is the traceback the user saw.
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    _abandon_in_closed_loop(read())
    assert len(seen) == 1 and "Encountered error while reading array index" in str(seen[0].exc_value)


def _unretrieved(make) -> None:
    """Run ``make(loop)`` (a task or future that fails) and drop it without looking at its error."""
    import gc

    loop = asyncio.new_event_loop()
    fut = make(loop)
    loop.run_until_complete(asyncio.wait([fut]))
    loop.close()
    del fut
    gc.collect()


def _gathered(loop, *coroutines):
    asyncio.set_event_loop(loop)  # gather() binds to the current loop
    return asyncio.gather(*coroutines)


def test_unretrieved_errors_of_failed_reads_are_dropped(monkeypatch, caplog):
    async def failing_read(**_):
        raise ValueError(_TS_ERROR)

    read = _orbax_read(monkeypatch, failing_read)

    def failed_future(loop, message):
        fut = loop.create_future()
        fut.set_exception(ValueError(message))
        return fut

    async def own_failure():
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        _unretrieved(lambda loop: loop.create_task(read()))
        _unretrieved(lambda loop: failed_future(loop, _TS_ERROR))
        # What Orbax's batch is: asyncio.gather over the reads (seen in CI as "_GatheringFuture
        # exception was never retrieved" with Orbax's wrapped TensorStore error).
        _unretrieved(lambda loop: _gathered(loop, read(), read()))
        assert caplog.text == ""
        _unretrieved(lambda loop: failed_future(loop, "boom"))  # not TensorStore's: kept
        assert "Future exception was never retrieved" in caplog.text and "boom" in caplog.text
        caplog.clear()
        _unretrieved(lambda loop: _gathered(loop, own_failure()))  # not Orbax's: kept
    assert "_GatheringFuture exception was never retrieved" in caplog.text


def test_other_abandoned_coroutines_reach_the_previous_hook(monkeypatch, caplog):
    async def own_read():
        try:
            await asyncio.get_running_loop().create_future()
        except BaseException as e:
            raise ValueError("cleanup failed") from e

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", orbax_noise._UnraisableFilter(seen.append))
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        _abandon_in_closed_loop(own_read())
    assert len(seen) == 1 and str(seen[0].exc_value) == "cleanup failed"
    assert "Task was destroyed" in caplog.text
