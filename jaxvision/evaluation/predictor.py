"""Top-k predictions for image files with a trained run (the library side of ``jaxvision.predict``).

    run = jaxvision.training.checkpoints.load_run(workdir)
    for r in predict_files(run, ["cat.png", "folder/"], top_k=5):
        print(r["file"], r.get("top_k") or r["error"])

Each file becomes model input through ``jaxvision.data.load_for_eval``: the pipelines' own
decoder and evaluation transform, with the preprocessing the run directory records
(``run_input.resolve_run``; no dataset is opened), so the input is bit-identical to the file's
row in an evaluation batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import numpy as np

from jaxvision.data.image_listing import IMAGE_EXTENSIONS, expand_paths
from jaxvision.evaluation.evaluator import make_logits_fn

__all__ = ["IMAGE_EXTENSIONS", "expand_paths", "format_prediction", "predict_files",
           "predict_images", "read_images", "top_k_from_probs"]

def top_k_from_probs(probs: np.ndarray, k: int, class_names: Sequence[str]
                     ) -> list[list[dict[str, Any]]]:
    """(N, K) probabilities -> per row the k most probable ``{'class', 'prob'}``, best first
    (ties: lower class index first)."""
    k = min(int(k), probs.shape[-1])
    order = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    return [[{"class": str(class_names[j]), "prob": float(row[j])} for j in idx]
            for row, idx in zip(probs, order, strict=True)]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def predict_images(run, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(N, H, W, C) preprocessed float images -> (N, K) float64 probabilities."""
    logits_fn = make_logits_fn(run.model)
    variables = run.variables
    out = []
    for start in range(0, len(images), batch_size):
        chunk = np.asarray(images[start:start + batch_size], np.float32)
        rows = chunk.shape[0]
        if rows < batch_size and len(images) > batch_size:  # one compiled shape
            chunk = np.concatenate([chunk, np.zeros((batch_size - rows,) + chunk.shape[1:],
                                                    chunk.dtype)])
        logits = np.asarray(jax.device_get(logits_fn(variables, chunk)))[:rows]
        out.append(_softmax(logits))
    if not out:
        return np.zeros((0, 0))
    return np.concatenate(out)


def class_names_of(run, num_classes: int) -> list[str]:
    names = getattr(run, "class_names", None)
    if names is None or len(names) != num_classes:
        return [str(i) for i in range(num_classes)]
    return [str(n) for n in names]


def read_images(run, files: Sequence[str]) -> tuple[np.ndarray | None, list[int], dict[int, str]]:
    """Read and preprocess image files for ``run`` exactly as its evaluation pipeline does, with
    the run's recorded preprocessing (no dataset is opened).

    Returns (float32 (N_ok, H, W, C) model inputs or None when no file could be read, indices of
    the files read, {index: 'ErrorType: message'} of the others).
    """
    from jaxvision import data
    from jaxvision.evaluation.run_input import resolve_run

    resolved = resolve_run(run)
    images, ok, errors = [], [], {}
    for i, f in enumerate(files):
        try:
            if not os.path.exists(f):
                raise FileNotFoundError(f"no such file: {f}")
            images.append(np.asarray(data.load_for_eval(run.config.data, f, resolved), np.float32))
            ok.append(i)
        except Exception as e:  # noqa: BLE001 - any failure is reported per file
            errors[i] = f"{type(e).__name__}: {e}"
    if not images:
        return None, ok, errors
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"load_for_eval returned different shapes {sorted(shapes)}")
    return np.stack(images), ok, errors


def predict_files(run, paths: Iterable[str], top_k: int = 5, batch_size: int = 64
                  ) -> list[dict[str, Any]]:
    """Top-k predictions for image files and folders.

    Returns one dict per file, in order: ``{'file': path, 'top_k': [{'class': name, 'prob': p},
    ...]}`` or, for a file that could not be read or preprocessed, ``{'file': path, 'error':
    message}`` (the other files are still predicted).
    """
    if int(top_k) < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    files = expand_paths(paths)
    results: list[dict[str, Any]] = [{"file": f} for f in files]
    images, ok, errors = read_images(run, files)
    for i, message in errors.items():
        results[i]["error"] = message
    if images is not None:
        probs = predict_images(run, images, batch_size=batch_size)
        names = class_names_of(run, probs.shape[-1])
        for i, top in zip(ok, top_k_from_probs(probs, top_k, names), strict=True):
            results[i]["top_k"] = top
    return results


def format_prediction(result: dict[str, Any]) -> str:
    """``file: 7 0.97, 1 0.02, ...`` (or ``file: ERROR ...``)."""
    if "error" in result:
        return f"{result['file']}: ERROR {result['error']}"
    preds = ", ".join(f"{t['class']} {t['prob']:.2f}" for t in result["top_k"])
    return f"{result['file']}: {preds}"
