"""What a weights file is, told from its first bytes, checked before any reader opens it.

``check_weights_file(source, path)`` raises one ``ValueError`` that names the file, what it
looks like and what ``--source`` expects: readers' own failures (``zipfile.BadZipFile``, NumPy's
advice to unpickle, a missing ``model.weights.h5``, "needs torch" for a PNG) never reach the user.
Nothing here unpickles or imports torch/keras.

Signatures (the formats' specifications):
  zip ``PK\\x03\\x04`` (.keras = zip of config.json + model.weights.h5, Keras 3 saving format;
  .npz = zip of .npy; torch.save >= 1.6 = zip of data.pkl + tensors), HDF5 ``\\x89HDF\\r\\n\\x1a\\n``
  (Keras .h5), safetensors = little-endian u64 header length N then a JSON object of N bytes,
  legacy torch.save = a pickle (protocol 2+: ``\\x80`` then the protocol number).
"""

from __future__ import annotations

import json
import os
import struct
import zipfile

__all__ = ["EXPECTED", "check_weights_file", "describe_bytes", "is_safetensors"]

EXPECTED = {
    "keras": "a Keras model: a .keras file (model.save; a zip holding model.weights.h5) or an "
             ".h5 (HDF5) file",
    "torch": "a PyTorch state dict: a .safetensors file or a torch.save .pt/.pth/.bin file",
    "npz": "a ViT-paper .npz file (a zip of .npy arrays, e.g. from gs://vit_models)",
}

_HDF5 = b"\x89HDF\r\n\x1a\n"
_ZIP = b"PK\x03\x04"
_OTHER = (  # well-known files users pick by mistake
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x93NUMPY", "a single .npy array"),
    (b"%PDF", "a PDF document"),
)


def describe_bytes(head: bytes, size: int) -> str:
    """A short phrase for what a file with these first bytes is, e.g. 'a PNG image'."""
    if size == 0:
        return "empty"
    if head.startswith(_ZIP):
        return "a zip archive"
    if head.startswith(_HDF5):
        return "an HDF5 file"
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "a Python pickle"
    for magic, what in _OTHER:
        if head.startswith(magic):
            return what
    if _safetensors_header(head, size) is not None:
        return "a safetensors file"
    if head.isascii() and all(c.isprintable() or c.isspace() for c in head.decode("ascii")):
        return "a text file"
    return "not a known weights format"


def _safetensors_header(head: bytes, size: int) -> int | None:
    """The header length if ``head`` starts like a safetensors file, else None."""
    if len(head) < 9:
        return None
    (n,) = struct.unpack("<Q", head[:8])
    return n if head[8:9] == b"{" and 2 <= n < 100_000_000 else None


def _safetensors_problem(path: str, header_size: int, size: int) -> str | None:
    """Whether the header is a JSON object and the tensors it lists fit in the file."""
    if header_size + 8 > size:
        return f"is a truncated safetensors file ({size} bytes; its header alone needs {header_size + 8})"
    with open(path, "rb") as f:
        f.seek(8)
        try:
            header = json.loads(f.read(header_size))
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"),
                      default=0)
        except (ValueError, TypeError, KeyError, IndexError):
            return "is a damaged safetensors file (its header is not valid JSON)"
    if 8 + header_size + end > size:
        return f"is a truncated safetensors file ({size} bytes; its header lists {8 + header_size + end})"
    return None


def _zip_members(path: str) -> list[str] | None:
    """Member names of a readable zip (its central directory is at the end), else None."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError, EOFError):
        return None


def _problem(source: str, path: str, head: bytes, size: int) -> str | None:
    """Why ``path`` cannot be a ``source`` weights file, or None when its format fits."""
    kind = describe_bytes(head, size)
    zipped = head.startswith(_ZIP)
    members = _zip_members(path) if zipped else None
    if zipped and members is None:
        return "is a damaged or truncated zip archive (no readable central directory)"
    if source == "keras":
        if kind == "an HDF5 file":
            return None
        if members is not None and "model.weights.h5" in members:
            return None
        if members is not None:
            return "is a zip archive without model.weights.h5, so not a Keras .keras file"
    elif source == "torch":
        if kind == "a safetensors file":
            return _safetensors_problem(path, _safetensors_header(head, size), size)
        if kind == "a Python pickle" or (members is not None
                                         and any(m.endswith("data.pkl") for m in members)):
            return None
        if members is not None:
            return "is a zip archive without data.pkl, so not a torch.save file"
    elif source == "npz":
        if members is not None and members and all(m.endswith(".npy") for m in members):
            return None
        if members is not None:
            return "is a zip archive with members that are not .npy arrays, so not an .npz file"
    return f"is {kind}" if kind not in ("empty", "not a known weights format") else (
        "is empty" if kind == "empty" else "is not in a known weights format")


def check_weights_file(source: str, path: str | os.PathLike) -> None:
    """Refuse ``path`` unless its first bytes fit ``source`` ('keras' | 'torch' | 'npz').

    Raises:
      FileNotFoundError: ``path`` is not a file.
      ValueError: the file's format does not fit ``source``; the message names the file, what it
        is and what ``source`` expects (``EXPECTED``).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weights file {path!r} not found")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(64)
    problem = _problem(source, path, head, size)
    if problem is not None:
        raise ValueError(f"{path!r} {problem}; --source {source} needs {EXPECTED[source]}")


def is_safetensors(path: str | os.PathLike) -> bool:
    """Whether ``path`` starts like a safetensors file (whatever its extension)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        return _safetensors_header(f.read(16), size) is not None
