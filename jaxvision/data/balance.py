"""Class imbalance: per-class loss weights and (in the pipeline) class-balanced resampling."""

import numpy as np

METHODS = ("none", "inverse", "effective")


def weights_from_counts(counts, method: str = "inverse", beta: float = 0.999) -> np.ndarray:
    """Per-class loss weights from class counts n_k (K,), float32 (K,).

    - 'none': all ones.
    - 'inverse': n / (K * n_k) (scikit-learn's 'balanced'; the example-weighted mean is 1).
    - 'effective': (1 - beta) / (1 - beta**n_k), normalized to sum to K (Cui et al. 2019,
      "Class-Balanced Loss Based on Effective Number of Samples").
    Classes without examples get weight 0.
    """
    counts = np.asarray(counts, np.float64)
    k = counts.shape[0]
    present = counts > 0
    if method == "none":
        return np.ones(k, np.float32)
    w = np.zeros(k, np.float64)
    if method == "inverse":
        w[present] = counts.sum() / (k * counts[present])
    elif method == "effective":
        if not 0 <= beta < 1:
            raise ValueError(f"class_weight_beta must be in [0, 1), got {beta}")
        w[present] = (1.0 - beta) / (1.0 - np.power(beta, counts[present]))
        w = w / w.sum() * k
    else:
        raise ValueError(f"class_weighting={method!r}; choose one of {METHODS}")
    return w.astype(np.float32)


def class_counts(labels, num_classes: int) -> np.ndarray:
    """Examples per class, int64 (K,)."""
    return np.bincount(np.asarray(labels, np.int64), minlength=num_classes)[:num_classes]


def class_weights(config_data, *, split: str | None = None, counts=None) -> np.ndarray:
    """Per-class loss weights float32 (K,) for config.data.class_weighting, counted on the
    training split (`split` defaults to config.data.train_split; all processes' examples), or on
    the given `counts`."""
    method = config_data.class_weighting
    if counts is None:
        from jaxvision.data import sources

        source = sources.get_source(config_data)
        split = sources.resolve_split(source, split or config_data.train_split)
        counts = class_counts(source.labels(split), len(source.meta.class_names))
    return weights_from_counts(counts, method, float(config_data.class_weight_beta))
