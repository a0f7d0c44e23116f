"""The ``JAXVISION_*`` environment settings, read one way and checked up front.

Every setting is read here: case and surrounding spaces ignored, an empty value meaning the
default, and anything else refused with the variable, the (shortened) value and what it takes in
one ``ValueError``. The command-line tools call ``check_all()`` before any work, so a typo is one
``error:`` line with exit status 2 whichever code path the run would take -- a setting is never
silently ignored or read as one side of a switch. A ``JAXVISION_*`` name that is not a setting
(a misspelt variable) is logged as a warning naming the closest setting.

Settings (their meaning is documented where they are used):

- ``JAXVISION_CONV_IMPL``: auto | xla | cpu | onednn (``jaxvision.layers.lowering``)
- ``JAXVISION_ONEDNN``: on/off switch, default on (``jaxvision.layers.onednn_build``)
- ``JAXVISION_ONEDNN_BF16``: auto | native | float32 (``jaxvision.layers.onednn_bf16``)
- ``JAXVISION_TAP_CONV``: auto | taps | xla (``jaxvision.layers.conv_cost``)
- ``JAXVISION_COMPILATION_CACHE``: a folder (absolute or ``~/``), or an off value / ``none``
  (``jaxvision.compilation_cache``)
- ``JAXVISION_MAX_IMAGE_PIXELS``: a positive pixel count, or ``0`` / ``none`` for no limit
  (``jaxvision.data.image_file``)
- ``JAXVISION_DATASET_CACHE``: a folder (``jaxvision.data.bundled_arrays``)
"""

from __future__ import annotations

import difflib
import logging
import os

__all__ = ["CHOICES", "ON", "OFF", "check_all", "choice", "switch", "folder_or_off",
           "pixel_limit"]

log = logging.getLogger(__name__)

ON = ("1", "true", "yes", "on")
OFF = ("0", "false", "no", "off")
# name -> (choices, default)
CHOICES = {
    "JAXVISION_CONV_IMPL": (("auto", "xla", "cpu", "onednn"), "auto"),
    "JAXVISION_ONEDNN_BF16": (("auto", "native", "float32"), "auto"),
    "JAXVISION_TAP_CONV": (("auto", "taps", "xla"), "auto"),
}
SWITCHES = {"JAXVISION_ONEDNN": True}  # name -> default
NO_FOLDER = OFF + ("none", "")  # a cache-folder setting that turns the cache off
# Read by this repository's benchmarks and tests, not by the library.
OTHER_KNOWN = ("JAXVISION_TORCH_PYTHON", "JAXVISION_TEST_TIMEOUT_S")
SHOWN_CHARS = 60  # of a refused value, in the message


def _refuse(name: str, raw: str, takes: str):
    shown = raw if len(raw) <= SHOWN_CHARS else raw[:SHOWN_CHARS] + "..."
    raise ValueError(f"{name}={shown!r} is not {takes}; unset it or pick one")


def choice(name: str, choices: tuple[str, ...] | None = None, default: str | None = None) -> str:
    """``$name`` normalized (stripped, lower case; unset or empty: the default), one of the
    choices (``CHOICES[name]`` unless given). Raises ValueError otherwise."""
    if choices is None:
        choices, default = CHOICES[name]
    raw = os.environ.get(name)
    value = default if raw is None else (raw.strip().lower() or default)
    if value not in choices:
        _refuse(name, raw, f"one of {choices}")
    return value


def switch(name: str, default: bool | None = None) -> bool:
    """``$name`` as an on/off switch (``ON`` / ``OFF`` values; unset or empty: the default,
    ``SWITCHES[name]`` unless given). Raises ValueError for any other value."""
    default = SWITCHES[name] if default is None else default
    return choice(name, ON + OFF, ON[0] if default else OFF[0]) in ON


def folder_or_off(name: str) -> str | None | bool:
    """``$name`` as a cache folder: None when unset (use the default folder), False when it is
    an off value (``OFF``, ``none`` or empty: no cache), else the folder, absolute. A relative
    path is refused (ValueError): a cache that moves with the working directory is a typo more
    often than a choice ('0x', 'Disabled')."""
    raw = os.environ.get(name)
    if raw is None:
        return None
    value = raw.strip()
    if value.lower() in NO_FOLDER:
        return False
    if not (os.path.isabs(value) or value.startswith("~")):
        _refuse(name, raw, f"an absolute folder (or ~/...) or one of {OFF + ('none',)}")
    return os.path.abspath(os.path.expanduser(value))


def pixel_limit(name: str) -> int | None | bool:
    """``$name`` as Pillow's ``MAX_IMAGE_PIXELS``: False when unset or empty (keep Pillow's),
    None for ``0`` / ``none`` (no limit), else a positive int. Raises ValueError otherwise."""
    raw = os.environ.get(name)
    value = (raw or "").strip().lower()
    if not value:
        return False
    if value in ("0", "none"):
        return None
    if value.isdigit():
        return int(value)
    _refuse(name, raw, "a positive number of pixels, or 0 / none for no limit")


# Every setting -> its reader (each raises ValueError for a bad value).
READERS = {**dict.fromkeys(CHOICES, choice), **dict.fromkeys(SWITCHES, switch),
           "JAXVISION_COMPILATION_CACHE": folder_or_off,
           "JAXVISION_MAX_IMAGE_PIXELS": pixel_limit,
           "JAXVISION_DATASET_CACHE": lambda name: None}  # any folder


def check_all() -> None:
    """Reads every ``JAXVISION_*`` setting present in the environment, raising ValueError for
    the first bad one; warns of ``JAXVISION_*`` names that are no setting."""
    known = sorted(READERS.keys() | set(OTHER_KNOWN))
    for name in sorted(k for k in os.environ if k.startswith("JAXVISION_")):
        if name in READERS:
            READERS[name](name)
        elif name not in OTHER_KNOWN:
            close = difflib.get_close_matches(name, known, n=1)
            log.warning("%s is not a jaxvision setting and is ignored%s", name,
                        f" (did you mean {close[0]}?)" if close else "")
