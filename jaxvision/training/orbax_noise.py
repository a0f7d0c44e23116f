"""Keep Orbax's and TensorStore's by-products of a failed checkpoint read or write off stderr.

A failed save or a damaged checkpoint is reported by jaxvision in one line; three by-products of
the failure would otherwise follow it on stderr:

* Orbax's finalize thread consumes the error of a failed asynchronous save and only logs it (absl,
  with a traceback). :class:`OrbaxLogFilter` keeps that error in :data:`BACKGROUND_FAILURES` for
  ``CheckpointStore.check_for_errors`` and drops the record.
* Orbax logs a warning for every checkpoint saved without metrics (by design here: only
  evaluation steps carry metrics), notices about read-only managers and a warning for a step
  folder without its metadata file (a damaged step, reported by jaxvision); dropped as well.
* Orbax runs each read/write batch with ``asyncio_utils.run_sync``: a fresh event loop that it
  closes as soon as ``asyncio.gather`` raises the first TensorStore error, while the sibling
  TensorStore reads/writes of that batch are still in flight. When they finish, TensorStore's C++
  completion callback calls ``loop.call_soon_threadsafe`` on the closed loop; the resulting
  ``RuntimeError('Event loop is closed')`` has no Python caller, so CPython prints it through
  ``sys.unraisablehook`` with a traceback (at any later moment, often while the store closes).
  :func:`install` adds a hook that drops exactly that case (the exception raised by asyncio's
  ``_check_closed`` with no owning object) and passes everything else to the previous hook.
  The operation it belonged to has already failed and been reported.
* When that loop is closed, the sibling reads still pending are abandoned: asyncio logs "Task was
  destroyed but it is pending!" for each, and garbage collection closes their coroutines by
  throwing ``GeneratorExit`` into them. Orbax's ``_read_array_index_and_device_put`` turns any
  ``BaseException`` of its read, ``GeneratorExit`` included, into a new ``Exception`` (with the
  TensorStore spec), which CPython can only print as "Exception ignored in: <coroutine object
  ...>" with a traceback: tens of lines per abandoned read. The hook drops exactly those (a
  coroutine object of Orbax or TensorStore, closed by GeneratorExit). :class:`AsyncioLogFilter`
  drops asyncio's matching log records: "Task was destroyed but it is pending" and "Task
  exception was never retrieved" for such a coroutine, and "<Future|_GatheringFuture> exception
  was never retrieved" for a future or ``asyncio.gather`` whose error came from Orbax or
  TensorStore, which the failed batch already reported.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import sys

BACKGROUND_FAILURES: list[BaseException] = []

# Orbax's log messages of a failed asynchronous save (each repeats the same exception).
_SAVE_FAILURE_MESSAGES = ("Checkpointer failed", "in background save thread",
                          "_SignalingThread.run() raised", "Finalize thread")
# Expected notices: metrics-less saves, read-only managers, and the missing metadata file of a
# damaged step (jaxvision reports the step itself, in one line).
_NOTICES = ("tracked_metric", "read_only=True", "is read only", "Metadata file does not exist")


class OrbaxLogFilter(logging.Filter):
    """absl-logger filter: keeps background save errors, drops Orbax's expected notices and the
    tracebacks of errors the caller reports in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if record.exc_info and "orbax" in record.pathname:
            if any(m in msg for m in _SAVE_FAILURE_MESSAGES):
                BACKGROUND_FAILURES.append(record.exc_info[1])
                return False
            record.exc_info, record.exc_text = None, None  # the caller reports it in one line
        return not any(n in msg for n in _NOTICES)


def is_closed_loop_callback(unraisable) -> bool:
    """True for TensorStore's completion callback hitting an event loop Orbax already closed."""
    exc, tb = unraisable.exc_value, unraisable.exc_traceback
    if unraisable.object is not None or not isinstance(exc, RuntimeError):
        return False
    if str(exc) != "Event loop is closed":
        return False
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_name == "_check_closed"


# Packages whose abandoned coroutines are by-products of a failed batch (see the module doc).
_ASYNC_PACKAGES = (f"{os.sep}orbax{os.sep}", f"{os.sep}tensorstore{os.sep}")


def _in_async_packages(path: str) -> bool:
    return any(p in path for p in _ASYNC_PACKAGES)


def is_abandoned_read(unraisable) -> bool:
    """True for an Orbax/TensorStore coroutine whose closing (GeneratorExit, thrown in when an
    abandoned read is garbage-collected) raised another exception."""
    obj = unraisable.object
    if not inspect.iscoroutine(obj) or not _in_async_packages(obj.cr_code.co_filename):
        return False
    exc, seen = unraisable.exc_value, 0
    while exc is not None and seen < 16:  # the chain leads back to the GeneratorExit
        if isinstance(exc, GeneratorExit):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


# asyncio's reports of a task or future nobody awaited any more (``BaseEventLoop.
# default_exception_handler``); the first line of the logged message. asyncio names the class:
# "Task", "Future" or "_GatheringFuture" (what ``asyncio.gather`` returns) "exception was never
# retrieved".
_ABANDONED = re.compile(r"(Task was destroyed but it is pending|\w+ exception was never retrieved)")
# How TensorStore spells an error (absl::StatusCode names), e.g. "FAILED_PRECONDITION: Error ...".
_TENSORSTORE_ERROR = re.compile(
    r"(CANCELLED|UNKNOWN|INVALID_ARGUMENT|DEADLINE_EXCEEDED|NOT_FOUND|ALREADY_EXISTS|"
    r"PERMISSION_DENIED|RESOURCE_EXHAUSTED|FAILED_PRECONDITION|ABORTED|OUT_OF_RANGE|"
    r"UNIMPLEMENTED|INTERNAL|UNAVAILABLE|DATA_LOSS|UNAUTHENTICATED): ")


def _is_checkpoint_io_error(exc: BaseException | None) -> bool:
    """True when ``exc`` or an exception it was raised from is a TensorStore error or was raised
    inside Orbax/TensorStore (Orbax wraps TensorStore's error in a plain ``Exception``)."""
    seen = 0
    while exc is not None and seen < 16:
        if _TENSORSTORE_ERROR.match(str(exc)):
            return True
        tb = exc.__traceback__
        while tb is not None:
            if _in_async_packages(tb.tb_frame.f_code.co_filename):
                return True
            tb = tb.tb_next
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


class AsyncioLogFilter(logging.Filter):
    """``asyncio``-logger filter: drops asyncio's reports of a read abandoned with its closed loop,
    i.e. a task running an Orbax/TensorStore coroutine, or a task/future/gather whose error came
    from a checkpoint read or write that the failed batch already reported."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if not _ABANDONED.match(msg):
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and _is_checkpoint_io_error(exc):
            return False
        return msg.startswith("Future") or not _in_async_packages(msg)


class _UnraisableFilter:
    def __init__(self, previous):
        self.previous = previous

    def __call__(self, unraisable) -> None:
        if not (is_closed_loop_callback(unraisable) or is_abandoned_read(unraisable)):
            self.previous(unraisable)


def install() -> None:
    """Install the log filters and the unraisable-exception hook once per process (idempotent)."""
    for name, kind in (("absl", OrbaxLogFilter), ("asyncio", AsyncioLogFilter)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())
    if not isinstance(sys.unraisablehook, _UnraisableFilter):
        sys.unraisablehook = _UnraisableFilter(sys.unraisablehook)
