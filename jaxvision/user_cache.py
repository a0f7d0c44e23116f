"""Where jaxvision keeps per-user files between runs (compiled programs, dataset arrays, the
convolution cost table): ``$XDG_CACHE_HOME/jaxvision`` (``~/.cache/jaxvision`` when unset), the
XDG Base Directory convention. No imports beyond the standard library: any layer may use it."""

import os

__all__ = ["directory"]


def directory(*parts: str) -> str:
    """``$XDG_CACHE_HOME/jaxvision/<parts...>`` (not created)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jaxvision", *parts)
