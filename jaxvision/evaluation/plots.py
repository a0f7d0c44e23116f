"""Evaluation plots as PNG files (matplotlib's Agg canvas; no display needed).

Every function takes the metrics dict of ``metrics.finalize`` / ``classification_metrics`` (or
the parts named in its signature) and a path, writes the PNG and returns the path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Figures are built with the object API on an Agg canvas rather than pyplot: that renders
# headless on servers and leaves the user's pyplot backend and figure list alone.

# Above this many classes, heatmaps drop tick labels and bar charts show the worst classes only.
MAX_LABELED_CLASSES = 40


def _figure(nrows=1, ncols=1, **kwargs):
    fig = Figure(figsize=kwargs.pop("figsize", None))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, **kwargs)
    return fig, axes


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def reliability_diagram(metrics: dict[str, Any], path: str, title: str = "") -> str:
    """Reliability diagram (accuracy vs confidence per bin, gap to the diagonal shaded) above
    the confidence histogram (fraction of examples per bin), as in Guo et al. 2017."""
    rel = metrics["reliability"]
    edges = np.asarray(rel["bin_edges"], float)
    count = np.asarray(rel["bin_count"], float)
    acc = np.asarray(rel["bin_accuracy"], float)
    conf = np.asarray(rel["bin_confidence"], float)
    width = np.diff(edges)
    left = edges[:-1]
    nonempty = count > 0

    fig, (ax, ax_hist) = _figure(
        2, 1, figsize=(5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.2]}
    )
    ax.bar(left[nonempty], acc[nonempty], width[nonempty], align="edge", color="tab:blue",
           edgecolor="black", linewidth=0.6, label="accuracy")
    # The gap between confidence and accuracy of each bin: what ECE sums up.
    gap_lo = np.minimum(acc, conf)[nonempty]
    gap_h = np.abs(conf - acc)[nonempty]
    ax.bar(left[nonempty], gap_h, width[nonempty], bottom=gap_lo, align="edge",
           color="none", edgecolor="tab:red", hatch="///", linewidth=0.8,
           label="gap |accuracy - confidence|")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ece = metrics.get("ece", float("nan"))
    mce = metrics.get("mce", float("nan"))
    head = f"{title}\n" if title else ""
    ax.set_title(f"{head}ECE {100 * ece:.2f}%  MCE {100 * mce:.2f}%  "
                 f"top-1 {100 * metrics.get('top1', float('nan')):.2f}%")
    ax.legend(loc="upper left", fontsize=8)

    total = max(count.sum(), 1.0)
    ax_hist.bar(left, count / total, width, align="edge", color="tab:gray", edgecolor="black",
                linewidth=0.6)
    n = metrics.get("num_examples")
    if n:
        mean_conf = float((conf * count).sum() / total)
        ax_hist.axvline(metrics.get("top1", np.nan), color="tab:blue", linestyle="-",
                        label="accuracy")
        ax_hist.axvline(mean_conf, color="tab:red", linestyle="--", label="mean confidence")
        ax_hist.legend(loc="upper left", fontsize=8)
    ax_hist.set_xlabel("confidence (top-label probability)")
    ax_hist.set_ylabel("fraction")
    return _save(fig, path)


def confusion_heatmap(confusion, class_names: Sequence[str] | None, path: str,
                      normalize: bool = True, title: str = "") -> str:
    """Confusion-matrix heatmap (rows true, columns predicted); rows normalized to recall by
    default, with counts written in the cells when there are few classes."""
    cm = np.asarray(confusion, float)
    k = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    size = min(max(4.0, 0.45 * k + 2), 18.0)
    fig, ax = _figure(figsize=(size + 1, size))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None,
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04,
                 label="fraction of true class" if normalize else "count")
    if k <= MAX_LABELED_CLASSES:
        ax.set_xticks(range(k), names, rotation=90 if max(map(len, names)) > 3 else 0,
                      fontsize=8)
        ax.set_yticks(range(k), names, fontsize=8)
        if k <= 20:
            for i in range(k):
                for j in range(k):
                    if cm[i, j]:
                        ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                                color="white" if shown[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix: {title}" if title else "confusion matrix")
    return _save(fig, path)


def score_axis_limits(values, step: float = 0.05) -> tuple[float, float]:
    """Y-axis limits for scores in [0, 1] scaled to the data, so that 94% vs 100% is visible:
    from the lowest value less a margin (10% of the spread, at least 0.02), rounded down to
    ``step``, to the highest plus the margin (at most 1.05, room above a bar at 1)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.05
    margin = max(0.02, 0.1 * float(v.max() - v.min()))
    lo = max(0.0, np.floor((float(v.min()) - margin) / step) * step)
    return float(lo), float(min(1.05, float(v.max()) + margin))


def per_class_bars(metrics: dict[str, Any], class_names: Sequence[str] | None, path: str,
                   title: str = "") -> str:
    """Per-class precision, recall and F1 as grouped bars (with support in the labels), the score
    axis scaled to the data (``score_axis_limits``). With many classes, the
    ``MAX_LABELED_CLASSES`` classes of lowest F1 are shown."""
    precision = np.asarray(metrics["precision"], float)
    recall = np.asarray(metrics["recall"], float)
    f1 = np.asarray(metrics["f1"], float)
    support = np.asarray(metrics["support"])
    k = len(f1)
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    idx = np.arange(k)
    suffix = ""
    if k > MAX_LABELED_CLASSES:
        idx = np.argsort(f1, kind="stable")[:MAX_LABELED_CLASSES]
        suffix = f" ({MAX_LABELED_CLASSES} lowest-F1 of {k} classes)"
    x = np.arange(len(idx))
    fig, ax = _figure(figsize=(max(6.0, 0.35 * len(idx) + 2), 4))
    w = 0.27
    ax.bar(x - w, precision[idx], w, label="precision")
    ax.bar(x, recall[idx], w, label="recall")
    ax.bar(x + w, f1[idx], w, label="F1")
    ax.set_xticks(x, [f"{names[i]} (n={int(support[i])})" for i in idx], rotation=90,
                  fontsize=8)
    lo, hi = score_axis_limits(np.concatenate([precision[idx], recall[idx], f1[idx]]))
    ax.set_ylim(lo, hi)
    ax.set_ylabel("score" if lo == 0 else f"score (axis starts at {lo:.2f})")
    ax.set_title((f"per-class metrics: {title}" if title else "per-class metrics") + suffix,
                 pad=22)
    ax.legend(fontsize=8, ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    return _save(fig, path)


def write_all(metrics: dict[str, Any], class_names: Sequence[str] | None, out_dir: str,
              prefix: str = "", title: str = "") -> dict[str, str]:
    """The three standard plots into ``out_dir``; returns {plot name: path}."""
    return {
        "reliability_diagram": reliability_diagram(
            metrics, os.path.join(out_dir, f"{prefix}reliability_diagram.png"), title),
        "confusion_matrix": confusion_heatmap(
            metrics["confusion_matrix"], class_names,
            os.path.join(out_dir, f"{prefix}confusion_matrix.png"), title=title),
        "per_class": per_class_bars(
            metrics, class_names, os.path.join(out_dir, f"{prefix}per_class.png"), title),
    }
