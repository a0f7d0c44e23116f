"""Readable tables and JSON files for evaluation results."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

# Scalar metrics in the order the summary table shows them: (key, label, shown as percent).
SUMMARY_KEYS = (
    ("top1", "top-1 accuracy", True),
    ("top5", "top-5 accuracy", True),
    ("nll", "NLL", False),
    ("brier", "Brier score", False),
    ("ece", "ECE", True),
    ("mce", "MCE", True),
    ("adaptive_ece", "adaptive ECE", True),
    ("classwise_ece", "class-wise ECE", True),
    ("balanced_accuracy", "balanced accuracy", True),
    ("f1_macro", "macro F1", True),
    ("auc_macro", "macro ROC-AUC (OvR)", False),
)

# Above this many classes the per-class table lists only the worst classes by F1.
MAX_TABLE_CLASSES = 30


def to_jsonable(obj: Any) -> Any:
    """numpy/jax arrays and scalars -> lists and Python numbers (NaN/inf -> None, valid JSON)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "__array__") and not isinstance(obj, (str, bytes)):
        arr = np.asarray(obj)
        if arr.ndim:
            return [to_jsonable(v) for v in arr.tolist()]
        obj = arr.item()
    if isinstance(obj, (np.generic,)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(obj: Any, path: str) -> str:
    """Write ``obj`` as indented JSON (via ``to_jsonable``); returns the path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(to_jsonable(obj), f, indent=2)
        f.write("\n")
    return path


def _fmt(value: Any, percent: bool) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{100 * value:.2f}%" if percent else f"{value:.4f}"


def summary_table(columns: dict[str, dict[str, Any]]) -> str:
    """Scalar metrics of one or more results side by side, e.g. {'before': m1, 'after': m2}."""
    names = list(columns)
    rows = [(label, [_fmt(columns[c].get(key), pct) for c in names])
            for key, label, pct in SUMMARY_KEYS if any(key in columns[c] for c in names)]
    w0 = max(len(r[0]) for r in rows)
    widths = [max(len(c), *(len(r[1][i]) for r in rows)) for i, c in enumerate(names)]
    lines = ["  ".join([" " * w0] + [c.rjust(w) for c, w in zip(names, widths, strict=True)])]
    for label, vals in rows:
        lines.append("  ".join([label.ljust(w0)]
                               + [v.rjust(w) for v, w in zip(vals, widths, strict=True)]))
    return "\n".join(lines)


def per_class_table(metrics: dict[str, Any], class_names: Sequence[str] | None = None,
                    max_classes: int = MAX_TABLE_CLASSES) -> str:
    """Precision / recall / F1 / support per class (the lowest-F1 classes when there are many)."""
    f1 = np.asarray(metrics["f1"], float)
    k = len(f1)
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    idx = np.arange(k)
    title = "per-class metrics"
    if k > max_classes:
        idx = np.argsort(f1, kind="stable")[:max_classes]
        title += f" ({max_classes} lowest-F1 of {k} classes)"
    w0 = max(5, *(len(names[i]) for i in idx))
    lines = [title, f"{'class'.ljust(w0)}  precision     recall         F1    support"]
    for i in idx:
        lines.append(
            f"{names[i].ljust(w0)}  {100 * metrics['precision'][i]:8.2f}%  "
            f"{100 * metrics['recall'][i]:8.2f}%  {100 * f1[i]:8.2f}%  "
            f"{int(metrics['support'][i]):9d}"
        )
    return "\n".join(lines)


def format_report(result: dict[str, Any], class_names: Sequence[str] | None = None) -> str:
    """The evaluate command's text: header, summary (before/after when calibrated), per class."""
    head = (f"split {result.get('split', '?')!r}: {result.get('num_examples', '?')} examples, "
            f"{result.get('num_classes', '?')} classes, step {result.get('step', '?')}")
    parts = [head]
    cal = result.get("calibration")
    if cal:
        parts.append(f"temperature scaling fitted on {cal['fit_split']!r}: T = "
                     f"{cal['temperature']:.4f} (NLL there {cal['val_nll_before']:.4f} -> "
                     f"{cal['val_nll_after']:.4f})")
        parts.append(summary_table({"T=1": result, f"T={cal['temperature']:.3f}":
                                    cal["after"]}))
    else:
        parts.append(summary_table({"value": result}))
    parts.append(per_class_table(result, class_names))
    rob = result.get("robustness")
    if rob:
        parts.append("robustness: " + json.dumps(to_jsonable(rob), sort_keys=True))
    plots = result.get("plots")
    if plots:
        parts.append("plots: " + ", ".join(sorted(plots.values())))
    return "\n\n".join(parts)
