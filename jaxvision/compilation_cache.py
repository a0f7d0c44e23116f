"""JAX's persistent compilation cache, on by default for every jaxvision command.

``train``, ``evaluate``, ``predict`` and ``explain`` call :func:`enable` before compiling anything,
all with the same directory, so a second run of any of them (same model, shapes, devices and JAX
version) loads its executables from disk instead of compiling them again. JAX keys each entry by
the lowered program, the compile options, the devices and the jax/jaxlib versions, so a stale entry
is never used: it is simply a miss.

Where the cache lives (first that applies):
  1. ``enable(setting)`` with a path, or ``'none'`` / ``'off'`` / ``''`` to disable it (the
     training config's ``compilation_cache`` key passes through here; its default is ``'auto'``);
  2. the environment variable ``JAXVISION_COMPILATION_CACHE`` (a path, or ``none`` to disable);
  3. ``$XDG_CACHE_HOME/jaxvision/jax`` (``~/.cache/jaxvision/jax`` when XDG_CACHE_HOME is unset).

Hits and misses are counted from JAX's own monitoring events; :func:`stats` returns them and the
commands log one line ``compilation cache: 3/3 hits (100%) ...`` at exit.
"""

from __future__ import annotations

import atexit
import logging
import os

import jax
from jax import monitoring

from jaxvision import env_settings, user_cache

log = logging.getLogger("jaxvision.compilation_cache")

ENV_VAR = "JAXVISION_COMPILATION_CACHE"
DISABLED = env_settings.NO_FOLDER
# Bounded by JAX's own LRU eviction; a ResNet-50 train step is ~100 MiB, a LeNet one ~1 MiB.
MAX_SIZE_BYTES = 4 << 30

_EVENTS = {
    "/jax/compilation_cache/compile_requests_use_cache": "requests",
    "/jax/compilation_cache/cache_hits": "hits",
    "/jax/compilation_cache/cache_misses": "misses",
}
_DURATIONS = {"/jax/compilation_cache/compile_time_saved_sec": "saved_s"}
_state = {"directory": None, "listening": False, "reported": False}
_counts = {"requests": 0, "hits": 0, "misses": 0, "saved_s": 0.0}


def default_directory() -> str:
    """``$XDG_CACHE_HOME/jaxvision/jax``, or ``~/.cache/jaxvision/jax``."""
    return user_cache.directory("jax")


def resolve_directory(setting: str | None = "auto") -> str | None:
    """The cache directory for ``setting`` ('auto', a path, or 'none'/'off'/''), or None when
    disabled. 'auto' defers to ``$JAXVISION_COMPILATION_CACHE``, then :func:`default_directory`."""
    value = "auto" if setting is None else str(setting).strip()
    if value.lower() == "auto":
        env = env_settings.folder_or_off(ENV_VAR)  # ValueError for a relative path / typo
        if env is None:
            return default_directory()
        return env or None
    if value.lower() in DISABLED:
        return None
    return os.path.abspath(os.path.expanduser(value))


def enable(setting: str | None = "auto", *, report_at_exit: bool = True) -> str | None:
    """Turns the persistent cache on at the directory :func:`resolve_directory` gives (or leaves
    it off); returns the directory or None. Call it before the first compilation.

    Every computation is cached, however short its compilation (JAX's default caches only those
    over 1 s, which leaves out all of a small model's steps). An unusable directory only logs a
    warning: the command then compiles as if the cache were off.
    """
    directory = resolve_directory(setting)
    _listen()
    if directory is None:
        jax.config.update("jax_enable_compilation_cache", False)
        _state["directory"] = None
        return None
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        log.warning("compilation cache disabled: cannot create %s (%s)", directory, e)
        jax.config.update("jax_enable_compilation_cache", False)
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    jax.config.update("jax_compilation_cache_max_size", MAX_SIZE_BYTES)
    _state["directory"] = directory
    if report_at_exit and not _state["reported"]:
        _state["reported"] = True
        atexit.register(_report)
    return directory


def stats() -> dict:
    """{'directory', 'requests', 'hits', 'misses', 'saved_s', 'hit_rate'} since the process
    started (hit_rate = hits / requests, None before the first cached compilation)."""
    out = {"directory": _state["directory"], **_counts}
    out["hit_rate"] = _counts["hits"] / _counts["requests"] if _counts["requests"] else None
    return out


def summary() -> str:
    s = stats()
    if s["directory"] is None:
        return "compilation cache: off"
    if not s["requests"]:
        return f"compilation cache: no compilation ({s['directory']})"
    return (f"compilation cache: {s['hits']}/{s['requests']} hits ({100 * s['hit_rate']:.0f}%), "
            f"{s['saved_s']:.1f} s of compilation saved ({s['directory']})")


def _listen() -> None:
    if _state["listening"]:
        return
    _state["listening"] = True
    monitoring.register_event_listener(_on_event)
    monitoring.register_event_duration_secs_listener(_on_duration)


def _on_event(event: str, **_) -> None:
    key = _EVENTS.get(event)
    if key is not None:
        _counts[key] += 1


def _on_duration(event: str, duration: float, **_) -> None:
    key = _DURATIONS.get(event)
    if key is not None:
        _counts[key] += max(0.0, float(duration))


def skip_report() -> None:
    """No summary at exit (a command ending on an ``error:`` line, which must stay the last)."""
    _state["skip_report"] = True


def _report() -> None:
    if _state["directory"] is not None and not _state.get("skip_report"):
        log.info("%s", summary())
