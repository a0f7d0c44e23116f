"""Which files of a folder are images: one listing for training (image-folder datasets),
``predict``, ``explain`` and ``evaluate``, so that every command sees the same files.

A file is listed when its name has an image extension (case-insensitive; :data:`IMAGE_EXTENSIONS`)
and neither it nor a folder above it (below the folder given) is hidden (``.name``: macOS
``._photo.jpg`` resource forks, ``.git``, ``.cache``). Everything else is left out without a word,
as torchvision's ``ImageFolder`` and Keras' ``image_dataset_from_directory`` leave it out: the
``Thumbs.db``/``desktop.ini`` that Windows writes next to photos, notes, archives. A listed file
that turns out not to decode is reported by whoever reads it (training: refused or, with
``data.skip_corrupt``, skipped and listed; predict/explain: an error for that file).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

# Raster formats that cameras, phones, scanners and image datasets produce and that Pillow 13
# reads (AVIF natively; HEIC/HEIF with the pillow-heif plugin, see image_file); PPM/PGM/PBM/PNM
# for classic vision datasets, TGA/QOI/JPEG 2000 for game and medical exports.
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".gif", ".bmp", ".dib", ".webp", ".tif",
    ".tiff", ".avif", ".heic", ".heif", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".qoi", ".jp2",
    ".j2k",
)


def is_image_name(name: str) -> bool:
    """True when a file called ``name`` (a base name) is listed: not hidden, image extension."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def list_images(folder: str) -> list[str]:
    """Image files under ``folder``, recursively: each folder's files in sorted order, then its
    sub-folders in sorted order (depth first). Paths are ``folder`` joined with the relative
    path."""
    out: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(os.path.join(root, f) for f in sorted(files) if is_image_name(f))
    return out


def expand_paths(paths: Iterable[str]) -> list[str]:
    """Command-line arguments -> files: a folder becomes its :func:`list_images`; a file is kept
    as given, whatever its name (the user asked for it; a bad one is reported when read)."""
    out: list[str] = []
    for p in paths:
        out += list_images(p) if os.path.isdir(p) else [p]
    return out
