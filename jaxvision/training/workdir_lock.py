"""One run per workdir: ``<workdir>/lock``, held with ``fcntl.flock`` by the run's process 0.

The kernel drops a flock when its holder dies (also on ``kill -9``), so a lock file left by a dead
run is recognised without guessing from pids; the file's content (host, pid, start time) only
tells a second run who holds the workdir, or the new holder whom it took over from.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time

log = logging.getLogger("jaxvision.train")
LOCK_FILE = "lock"


class WorkdirBusyError(RuntimeError):
    """Another live process holds the workdir."""


class WorkdirLock:
    """Context manager holding ``<workdir>/lock``; raises WorkdirBusyError when it is held.

    ``enabled=False`` (processes other than 0 of a multi-process run) makes it a no-op.
    """

    def __init__(self, workdir: str, *, enabled: bool = True):
        self.path = os.path.join(os.path.abspath(workdir), LOCK_FILE)
        self.enabled = enabled
        self._fd: int | None = None

    def __enter__(self) -> WorkdirLock:
        if not self.enabled:
            return self
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read(fd))
            os.close(fd)
            raise WorkdirBusyError(
                f"workdir {os.path.dirname(self.path)} is in use by another run ({holder}); wait "
                "for it to finish, stop it, or use another --workdir"
            ) from None
        previous = _read(fd)
        if previous:
            log.warning("taking over the lock of %s left by a run that is no longer running (%s)",
                        os.path.dirname(self.path), _describe(previous))
        mine = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(mine).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # an empty file marks a clean release
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def _read(fd: int) -> dict:
    raw = os.pread(fd, 4096, 0)
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError:
        return {"unreadable": raw[:80].decode(errors="replace")}


def _describe(holder: dict) -> str:
    if not holder:
        return "holder unknown"
    if "unreadable" in holder:
        return f"lock content {holder['unreadable']!r}"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
    return f"host {holder.get('host')}, pid {holder.get('pid')}, since {since}"
