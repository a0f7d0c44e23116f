"""Where jaxvision keeps per-user files between runs (compiled programs, dataset arrays, the
convolution cost table): ``$XDG_CACHE_HOME/jaxvision`` (``~/.cache/jaxvision`` when unset), the
XDG Base Directory convention. No imports beyond the standard library: any layer may use it."""

import contextlib
import os
import tempfile

__all__ = ["directory", "umask", "write_atomically"]


def directory(*parts: str) -> str:
    """``$XDG_CACHE_HOME/jaxvision/<parts...>`` (not created)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxvision", *parts)


def umask() -> int:
    """The process's file-creation mask, read without changing it (``os.umask`` can only be read
    by setting it, which races with other threads creating files); 0o022 where unreadable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def write_atomically(path: str, write, binary: bool = False) -> bool:
    """Writes a cache file: ``write(f)`` into a temporary file beside ``path`` (folders made),
    given the mode a plain ``open`` would (``mkstemp``'s 0600 would hide a shared cache from its
    other users), then renamed over ``path``, so a concurrent reader sees the old file or the
    whole new one. Returns whether it was stored: an OSError (read-only or full cache) leaves no
    temporary file and returns False -- a cache write costs time on a later run, nothing else."""
    folder, tmp = os.path.dirname(path), None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}-")
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
        return True
    except OSError:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.remove(tmp)
        return False
