"""Independent numpy references written from shared/reference/calibration.md (float64)."""

from __future__ import annotations

import numpy as np


def softmax(logits):
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def edges(num_bins):
    # The library's documented edges: m/M rounded to float32.
    return [np.float32(m / num_bins) for m in range(num_bins + 1)]


def in_bin(values, m, num_bins):
    """Membership of bin m (1-based) = ((m-1)/M, m/M], with value 0 in bin 1."""
    e = edges(num_bins)
    v = np.asarray(values, np.float32)
    member = (v > e[m - 1]) & (v <= e[m])
    if m == 1:
        member |= v == 0
    return member


def ece_mce(probs, labels, num_bins=15):
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    n = len(labels)
    ece, mce = 0.0, 0.0
    for m in range(1, num_bins + 1):
        b = in_bin(conf, m, num_bins)
        if b.sum() == 0:
            continue
        gap = abs(correct[b].mean() - conf[b].mean())
        ece += b.sum() / n * gap
        mce = max(mce, gap)
    return ece, mce


def classwise_ece(probs, labels, num_bins=15):
    n, k = probs.shape
    total = 0.0
    for c in range(k):
        pc = probs[:, c]
        is_c = (labels == c).astype(np.float64)
        for m in range(1, num_bins + 1):
            b = in_bin(pc, m, num_bins)
            if b.sum():
                total += b.sum() / n * abs(is_c[b].mean() - pc[b].mean())
    return total / k


def adaptive_ece(probs, labels, num_bins=15):
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    n = len(labels)
    order = np.argsort(conf, kind="stable")
    total, start = 0.0, 0
    for i in range(num_bins):
        size = n // num_bins + (1 if i < n % num_bins else 0)
        idx = order[start:start + size]
        start += size
        if size:
            total += size / n * abs(correct[idx].mean() - conf[idx].mean())
    return total


def brier(probs, labels):
    onehot = np.eye(probs.shape[1])[labels]
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))
