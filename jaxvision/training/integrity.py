"""Checkpoint integrity: a digest of every array recorded at save time, checked after restore.

Orbax's atomic rename keeps a killed run from leaving a half-written step, but nothing in a step
folder tells a flipped bit or a truncated file from good data, and a restore may then succeed with
wrong numbers. So each checkpoint's ``meta`` item carries :func:`tree_digest` of the state as saved,
and a restore is trusted only when :func:`verify` finds the same digest in the arrays it read back.
A damaged step is moved aside with :func:`quarantine` (never deleted), so the run can fall back to
the newest good one and the user can still inspect what went wrong.
"""

from __future__ import annotations

import hashlib
import os
import re

import jax
import numpy as np

from jaxvision.training import sharding

DIGEST_KEY = "digest"  # key of the digest in a checkpoint's meta
DAMAGED_DIR = "checkpoints_damaged"  # <workdir>/checkpoints_damaged/<step>: moved-aside steps


class DamagedCheckpointError(RuntimeError):
    """A checkpoint that is incomplete, unreadable or whose arrays fail the saved digest."""

    def __init__(self, step: int, reason: str):
        super().__init__(f"checkpoint {step} is damaged: {reason}")
        self.step = step
        self.reason = reason


def leaf_digest(x) -> str:
    """sha256 of a leaf's dtype, shape and bytes (hex).

    Always of the whole (gathered) value, so the digest does not depend on the mesh that saved or
    restored the array (an array split over several processes is gathered: a collective, and
    every process digests the same tree in the same order).
    """
    a = np.ascontiguousarray(sharding.host_copy(x))
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.reshape(-1).view(np.uint8).data if a.size else b"")
    return h.hexdigest()


def tree_digest(tree) -> list[str]:
    """Sorted leaf digests of ``tree``.

    Sorted rather than keyed by path: the training loop restores a TrainState while readers
    (``load_run``) restore plain dicts, whose paths spell optax's NamedTuples differently; a changed
    byte in any leaf still changes its digest.
    """
    return sorted(leaf_digest(x) for x in jax.tree.leaves(tree))


def verify(step: int, tree, meta: dict) -> None:
    """Raise DamagedCheckpointError when ``tree`` (restored) does not match ``meta``'s digest.

    Checkpoints written before digests were recorded (no key) are accepted as they are.
    """
    saved = meta.get(DIGEST_KEY)
    if saved is None:
        return
    got = tree_digest(tree)
    if len(got) != len(saved):
        raise DamagedCheckpointError(step, f"{len(got)} arrays read back, {len(saved)} saved")
    bad = sum(a != b for a, b in zip(sorted(saved), got, strict=True))
    if bad:
        raise DamagedCheckpointError(
            step, f"the content of {bad} of {len(saved)} arrays differs from the digest saved")


# Files every finished step folder holds (Orbax writes the commit marker last, on every file system).
REQUIRED_FILES = ("commit_success.txt", "state/_METADATA", "meta/metadata")


# TensorStore status codes of a read whose files are missing, cut short or not decodable
# (absl::StatusCode names, as TensorStore prints them).
_DATA_READ_CODES = ("NOT_FOUND", "FAILED_PRECONDITION", "DATA_LOSS", "OUT_OF_RANGE")


def unreadable_data_reason(e: BaseException) -> str | None:
    """"data files missing or unreadable (<array>: <TensorStore's reason>)" when ``e`` (or an
    error it was raised from) is TensorStore failing to read a checkpoint's array data, else None.

    Orbax wraps the TensorStore error in ``Exception("Encountered error while reading array
    index: ...")``, which names neither the file nor the cause.
    """
    chain, x = [], e
    while x is not None and len(chain) < 16:
        chain.append(x)
        x = x.__cause__ or x.__context__
    for err in reversed(chain):  # the innermost error says what is wrong
        text = str(err).strip().splitlines()[0] if str(err).strip() else ""
        m = re.match(rf"({'|'.join(_DATA_READ_CODES)}): (.*)", text)
        if m:
            array = re.search(r'Error reading "([^"/]+)', m.group(2))
            why = m.group(2).rsplit(": ", 1)[-1].split(";")[0][:160]
            where = f"{array.group(1)}: " if array else ""
            return f"data files missing or unreadable ({where}{why})"
    if any("error while reading array index" in str(err) for err in chain):
        return "data files missing or unreadable"
    return None


def check_complete(step: int, step_dir: str) -> None:
    """Raise DamagedCheckpointError when a file every finished checkpoint has is missing."""
    missing = [f for f in REQUIRED_FILES if not os.path.exists(os.path.join(step_dir, f))]
    if missing:
        raise DamagedCheckpointError(step, f"missing {', '.join(missing)} (incomplete save?)")


def quarantine(workdir: str, checkpoint_path: str) -> str:
    """Move a damaged step folder to ``<workdir>/checkpoints_damaged/`` (never delete); returns
    the new path (``<step>``, or ``<step>.N`` when that name is taken)."""
    dest_dir = os.path.join(os.path.abspath(workdir), DAMAGED_DIR)
    os.makedirs(dest_dir, exist_ok=True)
    base = os.path.join(dest_dir, os.path.basename(checkpoint_path.rstrip("/")))
    dest, n = base, 0
    while os.path.exists(dest):
        n += 1
        dest = f"{base}.{n}"
    os.rename(checkpoint_path, dest)
    return dest


def damaged_steps(workdir: str) -> list[str]:
    """Names of the step folders moved aside so far."""
    d = os.path.join(os.path.abspath(workdir), DAMAGED_DIR)
    return sorted(os.listdir(d)) if os.path.isdir(d) else []
