"""The ``JAXVISION_*`` environment settings, read one way: case and surrounding spaces ignored,
an empty value meaning the default, and anything else refused with the setting, the bad value
and the choices in one ``ValueError`` (which the command-line tools print as one ``error:``
line) -- a typo in a switch must not silently pick a side."""

from __future__ import annotations

import os

__all__ = ["choice", "switch", "ON", "OFF"]

ON = ("1", "true", "yes", "on")
OFF = ("0", "false", "no", "off")


def choice(name: str, choices: tuple[str, ...], default: str) -> str:
    """``$name`` normalized (stripped, lower case; unset or empty: ``default``), one of
    ``choices``. Raises ValueError otherwise."""
    raw = os.environ.get(name)
    value = default if raw is None else (raw.strip().lower() or default)
    if value not in choices:
        raise ValueError(f"{name}={raw!r} is not one of {choices}; unset it or pick one")
    return value


def switch(name: str, default: bool) -> bool:
    """``$name`` as an on/off switch (``ON`` / ``OFF`` values; unset or empty: ``default``).
    Raises ValueError for any other value."""
    return choice(name, ON + OFF, ON[0] if default else OFF[0]) in ON
