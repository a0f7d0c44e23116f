"""Explain image files with a run: the library side of ``python -m jaxvision.explain``.

Inputs are handled exactly as ``jaxvision.evaluation.predict_files`` does (folders searched
recursively, every file read and preprocessed through ``predictor.read_images`` with the run's
recorded preprocessing, one unreadable file reported and the others explained). Outputs never
overwrite: ``OUT/<stem>.<method>.<class>.png``, with ``-2``, ``-3``, ... added to the stem when
that name is taken (by an earlier run or by another input with the same name).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from jaxvision.evaluation import predictor


def target_index(target: str | None, class_names: list[str], num_classes: int) -> int | None:
    """``--target`` text (a class index or name) -> class index; ValueError when it is neither."""
    if target is None:
        return None
    if target.isdigit() and int(target) < num_classes:
        return int(target)
    if target in class_names:
        return class_names.index(target)
    raise ValueError(f"--target {target!r} is neither a class index below {num_classes} nor one "
                     f"of the class names {class_names}")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_") or "class"


def unused_path(out_dir: str, stem: str, suffix: str, taken: set[str]) -> str:
    """``out_dir/stem.suffix``, or ``stem-2``, ``stem-3``, ... when that file exists or is in
    ``taken`` (paths given out in this call); the returned path is added to ``taken``."""
    n = 1
    while True:
        path = os.path.join(out_dir, f"{stem if n == 1 else f'{stem}-{n}'}.{suffix}")
        if path not in taken and not os.path.exists(path):
            taken.add(path)
            return path
        n += 1


def explain_files(run, paths: Iterable[str], *, method: str = "gradcam", output: str,
                  layer: str | None = None, target: str | None = None, steps: int = 32,
                  alpha: float = 0.45, batch_size: int = 16) -> list[dict[str, Any]]:
    """Heat-map overlays for image files and folders, one PNG per readable file.

    Returns one dict per file, in order: ``{'file', 'class', 'prob', 'output'}`` (the predicted
    class, its probability, the PNG written) or ``{'file', 'error'}``. Raises ValueError when the
    model cannot do ``method`` or ``target`` is not a class.
    """
    import jax
    import jax.numpy as jnp

    from jaxvision.evaluation.run_input import resolve_run
    from jaxvision.explain.methods import explain
    from jaxvision.explain.overlay import save_overlay
    from jaxvision.robustness import Normalization

    files = predictor.expand_paths(paths)
    results: list[dict[str, Any]] = [{"file": f} for f in files]
    images, ok, errors = predictor.read_images(run, files)
    for i, message in errors.items():
        results[i]["error"] = message
    if images is None:
        return results
    resolved = resolve_run(run)
    normalization = Normalization(resolved.mean, resolved.std)
    baseline = normalization.to_model(jnp.zeros((), jnp.float32))  # IG from a black image
    num_classes = len(run.class_names) or int(run.config.model.num_classes)
    names = predictor.class_names_of(run, num_classes)
    t = target_index(target, names, num_classes)
    taken: set[str] = set()
    for start in range(0, len(ok), batch_size):
        chunk = jnp.asarray(images[start:start + batch_size])
        heat, logits = explain(run.model, run.variables, chunk, method=method, layer=layer,
                               target=t, steps=steps,
                               baseline=baseline if method == "integrated_gradients" else None)
        probs = np.asarray(jax.nn.softmax(logits.astype(jnp.float32), axis=-1))
        shown = np.clip(np.asarray(normalization.to_pixels(chunk)), 0, 1)
        for k, (h, p, img) in enumerate(zip(np.asarray(heat), probs, shown, strict=True)):
            i = ok[start + k]
            pred = int(p.argmax())
            stem = os.path.splitext(os.path.basename(files[i]))[0]
            out = unused_path(output, stem, f"{method}.{_safe(names[pred])}.png", taken)
            title = f"{method}: predicted {names[pred]} ({p[pred]:.1%})"
            if t is not None:
                title += f", explaining {names[t]}"
            save_overlay(out, img, h, title=title, alpha=alpha)
            results[i].update({"class": names[pred], "prob": float(p[pred]), "output": out})
    return results
