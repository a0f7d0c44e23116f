"""What data a run was trained on, recorded in every checkpoint and checked when resuming.

A resumed run that silently reads other data trains a different model under the same name: a
renamed class folder swaps labels, a deleted file moves validation images into training (image
folders are split by a seeded stratified draw over all files). So each checkpoint's ``meta`` holds
``{"class_names": [...], "splits": {split: fingerprint}}`` and :func:`changes` lists what differs.

Fingerprints (cheap: no image is decoded):
  image folder: number of files, files per class, and sha256 over (path relative to the root,
    size in bytes, label) of every file of the split, in order.
  TFDS: dataset name, version, split string and number of examples.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np

META_KEY = "data"


def _folder_split(source, split: str) -> dict:
    paths, labels = source.index.splits[split]
    h = hashlib.sha256()
    for p, y in zip(paths, labels, strict=True):
        rel = os.path.relpath(p, source.root)
        h.update(f"{rel}\0{os.path.getsize(p)}\0{int(y)}\n".encode())
    counts = np.bincount(np.asarray(labels, np.int64), minlength=len(source.index.class_names))
    return {"files": len(paths), "per_class": [int(c) for c in counts], "sha256": h.hexdigest()}


def _tfds_split(source, split: str) -> dict:
    return {"dataset": source.name, "version": source.version, "split": split,
            "examples": int(source.num_examples(split))}


def fingerprint(data_config, splits, class_names) -> dict:
    """The data identity of ``splits`` (split strings as given to data.build, the training split
    first; '' entries are skipped) of the dataset named by ``data_config``; ``class_names`` as
    the pipeline reports. ``train_split`` records which split trains, so that resuming on another
    one ('train[:50%]' -> 'train') is refused even though each split's own fingerprint matches."""
    from jaxvision.data import sources

    src = sources.get_source(data_config)
    out = {"class_names": [str(c) for c in class_names], "splits": {}}
    if splits and splits[0]:  # the first split trains: another one is other training data
        out["train_split"] = sources.resolve_split(src, splits[0])
    for split in splits:
        if not split:
            continue
        resolved = sources.resolve_split(src, split)
        if isinstance(src, sources.FolderSource):
            out["splits"][resolved] = _folder_split(src, resolved)
        else:
            out["splits"][resolved] = _tfds_split(src, resolved)
    return out


def changes(saved: dict | None, current: dict) -> list[str]:
    """Human-readable differences between the identity saved in a checkpoint and the current one
    ([] when equal, or when the checkpoint predates data identities)."""
    if not saved:
        return []
    out = []
    old_names, new_names = list(saved.get("class_names", [])), list(current["class_names"])
    if old_names != new_names:
        gone = [c for c in old_names if c not in new_names]
        new = [c for c in new_names if c not in old_names]
        detail = f"removed {gone}, added {new}" if gone or new else "same names, another order"
        out.append(f"class names changed ({detail}): {old_names} -> {new_names}")
    old_train, new_train = saved.get("train_split"), current.get("train_split")
    if old_train and new_train and old_train != new_train:  # older checkpoints do not record it
        out.append(f"training split changed: {old_train!r} -> {new_train!r}")
    for split, old in saved.get("splits", {}).items():
        cur = current["splits"].get(split)
        if cur is None or cur == old:
            continue
        if "files" in old and "files" in cur:
            detail = f"{old['files']} -> {cur['files']} files"
            if old["files"] == cur["files"]:
                detail += " (same count; names, sizes or labels differ)"
        else:
            detail = ", ".join(f"{k} {old.get(k)!r} -> {cur.get(k)!r}" for k in cur
                               if old.get(k) != cur.get(k))
        out.append(f"split {split!r} changed: {detail}")
    return out
