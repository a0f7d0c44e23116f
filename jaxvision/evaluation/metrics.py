"""Classification metrics: accuracy, calibration and per-class statistics.

Definitions follow ``shared/reference/calibration.md`` (Guo et al. 2017 for ECE/MCE).

Two layers:

* **Streaming** (jit-able, pure): ``init_state`` -> ``update_state`` per batch (with a mask) ->
  ``merge_states`` (plain sums, so ``jax.lax.psum`` over a mesh axis works too) -> ``finalize``
  once on the host. The state holds sufficient statistics only, never per-batch averages.
* **Host-side** ``Accumulator``: keeps the streaming state (merged on the host in float64/int64)
  plus the masked per-example probabilities that the order-based metrics need (``auc_macro``,
  ``adaptive_ece``). ``classification_metrics(logits, labels, mask)`` is the one-shot form built on
  it.

Conventions: logits (N, K) of any float dtype are computed on in float32; labels int (N,) in
[0, K); mask bool (N,) (False = padding: weight 0 in every metric). Confusion matrix rows are true
labels, columns predictions (the sklearn convention). Bins are right-closed
((m-1)/M, m/M], with c = 0 in the first bin; bin edges are the float32-rounded values m/M.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

TOP_K = 5  # the "top5" metric; capped at the number of classes.


@flax.struct.dataclass
class MetricState:
    """Sufficient statistics for the streaming metrics (a pytree of arrays; every leaf is a sum).

    K = number of classes, M = number of confidence bins. Counts are int32 on device (int64 once
    merged on the host), sums float32 on device (float64 on the host).

    Attributes:
      count: () number of (unmasked) examples.
      top1_correct: () examples whose label is the top-1 prediction.
      topk_correct: () examples whose label is among the top-min(5, K) predictions.
      nll_sum: () sum of -log p[y].
      brier_sum: () sum over examples of sum_k (p_k - 1[y = k])^2.
      bin_count: (M,) examples whose top-label confidence falls in each bin.
      bin_correct: (M,) correct predictions per bin.
      bin_conf_sum: (M,) sum of top-label confidences per bin.
      class_bin_count: (K, M) examples whose p_k falls in bin m.
      class_bin_label_sum: (K, M) of those, how many have label k.
      class_bin_prob_sum: (K, M) sum of p_k in bin m.
      confusion: (K, K) confusion[true, predicted].
    """

    count: Any
    top1_correct: Any
    topk_correct: Any
    nll_sum: Any
    brier_sum: Any
    bin_count: Any
    bin_correct: Any
    bin_conf_sum: Any
    class_bin_count: Any
    class_bin_label_sum: Any
    class_bin_prob_sum: Any
    confusion: Any

    @property
    def num_classes(self) -> int:
        return int(self.confusion.shape[-1])

    @property
    def num_bins(self) -> int:
        return int(self.bin_count.shape[-1])


def bin_edges(num_bins: int) -> np.ndarray:
    """(M + 1,) float32 bin edges: m/M rounded to float32 (0 and 1 exact)."""
    return np.linspace(0.0, 1.0, num_bins + 1).astype(np.float32)


def bin_index(values: jax.Array, num_bins: int) -> jax.Array:
    """Right-closed bin of each value in [0, 1]: bin m (0-based) holds (e_m, e_{m+1}], 0 -> bin 0.

    The index is the number of interior edges strictly below the value, so values exactly on an
    edge go to the lower bin, as the definition asks.
    """
    interior = jnp.asarray(bin_edges(num_bins)[1:-1])
    return jnp.searchsorted(interior, values.astype(jnp.float32), side="left").astype(jnp.int32)


def init_state(num_classes: int, num_bins: int = 15) -> MetricState:
    """Zero statistics for ``num_classes`` classes and ``num_bins`` confidence bins."""
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2 for classification metrics, got {num_classes}")
    if int(num_bins) < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    k, m = int(num_classes), int(num_bins)
    i32, f32 = jnp.int32, jnp.float32
    return MetricState(
        count=jnp.zeros((), i32),
        top1_correct=jnp.zeros((), i32),
        topk_correct=jnp.zeros((), i32),
        nll_sum=jnp.zeros((), f32),
        brier_sum=jnp.zeros((), f32),
        bin_count=jnp.zeros((m,), i32),
        bin_correct=jnp.zeros((m,), i32),
        bin_conf_sum=jnp.zeros((m,), f32),
        class_bin_count=jnp.zeros((k, m), i32),
        class_bin_label_sum=jnp.zeros((k, m), i32),
        class_bin_prob_sum=jnp.zeros((k, m), f32),
        confusion=jnp.zeros((k, k), i32),
    )


@functools.partial(jax.jit, static_argnames=("num_bins",))
def batch_state(logits, labels, mask=None, num_bins: int = 15) -> MetricState:
    """Statistics of one batch (what ``update_state`` adds). Pure and jit-able.

    Args:
      logits: (N, K) float, any dtype (computed in float32).
      labels: (N,) int in [0, K) where mask is True (masked labels may be anything, e.g. -1).
      mask: (N,) bool or None (all True).
      num_bins: M, static.
    """
    logits = jnp.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, num_classes), got {logits.shape}")
    n, k = logits.shape
    labels = jnp.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(
            f"labels must have shape ({n},) to match logits {logits.shape}, got {labels.shape}; "
            "pass integer class indices, not one-hot labels"
        )
    mask = jnp.ones((n,), bool) if mask is None else jnp.asarray(mask).astype(bool)
    if mask.shape != (n,):
        raise ValueError(f"mask must have shape ({n},), got {mask.shape}")
    m = int(num_bins)

    # Padding rows may carry garbage logits (NaN/Inf) and labels (or -1): give them finite
    # logits and class 0, with weight 0. Weighting alone is not enough: NaN * 0 is NaN.
    logits = jnp.where(mask[:, None], logits.astype(jnp.float32), 0.0)
    labels = jnp.where(mask, labels.astype(jnp.int32), 0)
    w_int = mask.astype(jnp.int32)
    w = mask.astype(jnp.float32)

    log_p = jax.nn.log_softmax(logits, axis=-1)
    p = jnp.exp(log_p)
    onehot = jax.nn.one_hot(labels, k, dtype=jnp.float32)

    # Top-k with the order of lax.top_k (ties: lower index first); top-1 is its first column.
    kk = min(TOP_K, k)
    _, top_idx = jax.lax.top_k(logits, kk)
    pred = top_idx[:, 0]
    correct1 = (pred == labels).astype(jnp.int32)
    correctk = jnp.any(top_idx == labels[:, None], axis=-1).astype(jnp.int32)

    # Gathered, not log_p * onehot: a -inf logit of another class must not give 0 * -inf.
    nll = -jnp.take_along_axis(log_p, labels[:, None], axis=-1)[:, 0]
    brier = jnp.sum(jnp.square(p - onehot), axis=-1)

    conf = jnp.take_along_axis(p, pred[:, None], axis=-1)[:, 0]
    b = bin_index(conf, m)
    bin_count = jax.ops.segment_sum(w_int, b, num_segments=m)
    bin_correct = jax.ops.segment_sum(correct1 * w_int, b, num_segments=m)
    bin_conf_sum = jax.ops.segment_sum(conf * w, b, num_segments=m)

    # Class-wise: each class's probability binned on its own; flat index k * M + bin.
    cb = bin_index(p, m) + (jnp.arange(k, dtype=jnp.int32) * m)[None, :]
    cb = cb.reshape(-1)
    w_cls = jnp.broadcast_to(w_int[:, None], (n, k)).reshape(-1)
    class_bin_count = jax.ops.segment_sum(w_cls, cb, num_segments=k * m).reshape(k, m)
    class_bin_label_sum = jax.ops.segment_sum(
        (onehot.astype(jnp.int32) * w_int[:, None]).reshape(-1), cb, num_segments=k * m
    ).reshape(k, m)
    class_bin_prob_sum = jax.ops.segment_sum(
        (p * w[:, None]).reshape(-1), cb, num_segments=k * m
    ).reshape(k, m)

    confusion = jax.ops.segment_sum(w_int, labels * k + pred, num_segments=k * k).reshape(k, k)

    return MetricState(
        count=jnp.sum(w_int),
        top1_correct=jnp.sum(correct1 * w_int),
        topk_correct=jnp.sum(correctk * w_int),
        nll_sum=jnp.sum(nll * w),
        brier_sum=jnp.sum(brier * w),
        bin_count=bin_count,
        bin_correct=bin_correct,
        bin_conf_sum=bin_conf_sum,
        class_bin_count=class_bin_count,
        class_bin_label_sum=class_bin_label_sum,
        class_bin_prob_sum=class_bin_prob_sum,
        confusion=confusion,
    )


def merge_states(a: MetricState, b: MetricState) -> MetricState:
    """Sum of two states (states are plain sums; ``jax.lax.psum(state, axis)`` is the same)."""
    return jax.tree.map(lambda x, y: x + y, a, b)


@jax.jit
def update_state(state: MetricState, logits, labels, mask=None) -> MetricState:
    """Add one batch to ``state``. Pure and jit-able; shapes of ``state`` fix K and M.

    Works unchanged on a batch sharded over devices under ``jax.jit`` (the sums are global), and
    per device under ``jax.shard_map``/``pmap`` followed by ``jax.lax.psum(state, axis)``.
    Already wrapped in ``jax.jit`` (so eager calls compile once per shape; inlined under jit).
    """
    logits = jnp.asarray(logits)
    if logits.ndim != 2 or logits.shape[-1] != state.num_classes:
        raise ValueError(
            f"logits must have shape (N, {state.num_classes}) for this state, got {logits.shape}"
        )
    return merge_states(state, batch_state(logits, labels, mask, num_bins=state.num_bins))


def to_host(state: MetricState) -> MetricState:
    """Device state -> numpy with int64 counts and float64 sums (for exact host accumulation)."""

    def conv(x):
        x = np.asarray(jax.device_get(x))
        return x.astype(np.int64) if np.issubdtype(x.dtype, np.integer) else x.astype(np.float64)

    return jax.tree.map(conv, state)


def _safe_div(num, den):
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def finalize(state: MetricState) -> dict[str, Any]:
    """Metrics from the statistics. Runs on the host (numpy, float64); call it once at the end.

    Returns floats: ``num_examples``, ``top1``, ``top5`` (k = min(5, K)), ``nll``, ``brier``,
    ``ece``, ``mce``, ``classwise_ece``, ``balanced_accuracy``, ``f1_macro``, ``precision_macro``,
    ``recall_macro``; numpy arrays: ``precision``, ``recall``, ``f1``, ``support`` (K,),
    ``confusion_matrix`` (K, K), and ``reliability`` (a dict of per-bin ``bin_edges`` (M+1,),
    ``bin_count``, ``bin_accuracy``, ``bin_confidence`` (M,)) for plots.

    Macro averages (f1/precision/recall_macro, balanced_accuracy) are over the classes that occur
    in the labels or predictions, as sklearn does by default; per-class arrays cover all K classes
    with 0 where a ratio is 0/0. With no examples every scalar is NaN.
    """
    s = to_host(state)
    k, m = s.num_classes, s.num_bins
    n = int(s.count)
    nan = float("nan")
    conf_mat = s.confusion
    support = conf_mat.sum(axis=1)
    predicted = conf_mat.sum(axis=0)
    tp = np.diag(conf_mat).astype(np.float64)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * tp, support + predicted)
    present = (support + predicted) > 0

    bin_acc = _safe_div(s.bin_correct, s.bin_count)
    bin_conf = _safe_div(s.bin_conf_sum, s.bin_count)
    nonempty = s.bin_count > 0

    out: dict[str, Any] = {"num_examples": n, "num_classes": k, "num_bins": m}
    if n == 0:
        for key in ("top1", "top5", "nll", "brier", "ece", "mce", "classwise_ece",
                    "balanced_accuracy", "f1_macro", "precision_macro", "recall_macro"):
            out[key] = nan
    else:
        out["top1"] = float(s.top1_correct) / n
        out["top5"] = float(s.topk_correct) / n
        out["nll"] = float(s.nll_sum) / n
        out["brier"] = float(s.brier_sum) / n
        # sum_m |B_m|/n |acc - conf| == sum_m |correct_m - conf_sum_m| / n.
        out["ece"] = float(np.sum(np.abs(s.bin_correct - s.bin_conf_sum)) / n)
        out["mce"] = float(np.max(np.abs(bin_acc - bin_conf)[nonempty]))
        out["classwise_ece"] = float(
            np.sum(np.abs(s.class_bin_label_sum - s.class_bin_prob_sum)) / n / k
        )
        has_support = support > 0
        out["balanced_accuracy"] = float(np.mean(recall[has_support]))
        out["f1_macro"] = float(np.mean(f1[present]))
        out["precision_macro"] = float(np.mean(precision[present]))
        out["recall_macro"] = float(np.mean(recall[present]))
    out["top5_k"] = min(TOP_K, k)
    out["precision"] = precision
    out["recall"] = recall
    out["f1"] = f1
    out["support"] = support
    out["confusion_matrix"] = conf_mat
    out["reliability"] = {
        "bin_edges": bin_edges(m).astype(np.float64),
        "bin_count": s.bin_count,
        "bin_accuracy": bin_acc,
        "bin_confidence": bin_conf,
    }
    return out


# ----------------------------------------------------------------------------------------------
# Order-based metrics (need every example): host-side numpy.


def adaptive_ece(confidences, correct, num_bins: int = 15) -> float:
    """Equal-mass ECE: examples sorted by confidence and split into ``num_bins`` groups whose
    sizes differ by at most one (the first n mod M groups get the extra example); then the ECE sum
    sum_m |B_m|/n |acc(B_m) - conf(B_m)| over those groups. Equal confidences are ordered wrong
    before right, so the value does not depend on the order of the examples (a group boundary
    through tied confidences would otherwise split them by position)."""
    conf = np.asarray(confidences, np.float64).reshape(-1)
    corr = np.asarray(correct, np.float64).reshape(-1)
    n = conf.size
    if n == 0:
        return float("nan")
    order = np.lexsort((corr, conf))  # by confidence, then correctness
    total = 0.0
    for idx in np.array_split(order, num_bins):
        if idx.size:
            total += abs(corr[idx].sum() - conf[idx].sum())
    return float(total / n)


def roc_auc_ovr_macro(probs, labels) -> float:
    """One-vs-rest macro ROC-AUC from (N, K) scores, ties counted one half (Mann-Whitney U).

    As sklearn's ``roc_auc_score(labels, probs, multi_class='ovr', average='macro')``; for K = 2 the
    AUC of the class-1 score (sklearn's binary case). Classes without positives or without
    negatives have no AUC and are left out of the mean (sklearn refuses such input); NaN if none
    is left.
    """
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels).reshape(-1)
    n, k = probs.shape
    if k == 2:
        probs, classes = probs[:, 1:], [1]
    else:
        classes = list(range(k))
    import scipy.stats  # 2 s to import: only where ROC-AUC is computed

    ranks = scipy.stats.rankdata(probs, axis=0)  # average ranks for ties
    aucs = []
    for j, c in enumerate(classes):
        pos = labels == c
        n_pos = int(pos.sum())
        n_neg = n - n_pos
        if n_pos == 0 or n_neg == 0:
            continue
        u = ranks[pos, j].sum() - n_pos * (n_pos + 1) / 2.0
        aucs.append(u / (n_pos * n_neg))
    return float(np.mean(aucs)) if aucs else float("nan")


# ----------------------------------------------------------------------------------------------
# Host-side accumulator and the one-shot function.


def _local_rows(x) -> np.ndarray:
    """This process's rows of a (possibly multi-host sharded) array, in order, as numpy."""
    if not isinstance(x, jax.Array):
        return np.asarray(x)
    if not x.is_fully_addressable:
        shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
        seen, rows = set(), []
        for s in shards:  # replicated shards repeat the same rows
            key = s.index[0].start
            if key not in seen:
                seen.add(key)
                rows.append(np.asarray(s.data))
        return np.concatenate(rows, axis=0)
    return np.asarray(jax.device_get(x))


class Accumulator:
    """Host-side evaluation accumulator: the streaming state plus the per-example logits.

    ``update(logits, labels, mask)`` per batch (logits (N, K) jax or numpy, possibly sharded over
    the devices of a mesh; labels (N,) int; mask (N,) bool or None); ``result()`` -> the dict of
    ``classification_metrics``. Statistics are merged on the host in int64/float64. The logits of
    unmasked examples are kept (float32) for the order-based metrics (``auc_macro``,
    ``adaptive_ece``) and for temperature scaling; ``keep_examples=False`` skips that (N x K
    floats of host memory) and reports the streaming metrics only. In a multi-process run each
    process feeds its own rows of the global batch; the kept examples are gathered across
    processes when read.

    Attributes: ``state`` (host ``MetricState``); properties ``logits`` (n, K) float32 and
    ``labels`` (n,) int64 of the unmasked examples, in feeding order.
    """

    def __init__(self, num_classes: int, num_bins: int = 15, keep_examples: bool = True):
        self.num_classes = int(num_classes)
        self.num_bins = int(num_bins)
        self.keep_examples = keep_examples
        self.state = to_host(init_state(self.num_classes, self.num_bins))
        self._logits: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._mask: list[np.ndarray] = []

    def update(self, logits, labels, mask=None) -> None:
        if getattr(logits, "ndim", None) != 2 or logits.shape[-1] != self.num_classes:
            raise ValueError(
                f"logits must have shape (N, {self.num_classes}), got "
                f"{getattr(logits, 'shape', None)}"
            )
        n = logits.shape[0]
        labels_h = _local_rows(labels)
        mask_h = np.ones(labels_h.shape, bool) if mask is None else _local_rows(mask).astype(bool)
        if labels_h.ndim != 1 or labels_h.shape[0] != n:
            raise ValueError(
                f"labels must be integer class indices of shape ({n},), got shape "
                f"{labels_h.shape}; pass class indices, not one-hot labels"
            )
        if not np.issubdtype(labels_h.dtype, np.integer):
            raise ValueError(f"labels must be integers, got dtype {labels_h.dtype}")
        valid = labels_h[mask_h]
        if valid.size and (valid.min() < 0 or valid.max() >= self.num_classes):
            raise ValueError(
                f"labels must lie in [0, {self.num_classes}) where mask is True; got values in "
                f"[{valid.min()}, {valid.max()}]. Check the model's num_classes against the data."
            )
        if mask is None:
            mask = np.ones((n,), bool)
        # Same compiled function as a user's update_state calls; merged on the host in 64 bits.
        state = update_state(init_state(self.num_classes, self.num_bins), logits, labels, mask)
        self.state = merge_states(self.state, to_host(state))
        if self.keep_examples:
            self._logits.append(_local_rows(logits).astype(np.float32))
            self._labels.append(labels_h.astype(np.int64))
            self._mask.append(mask_h)

    def _examples(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.keep_examples:
            raise ValueError("this Accumulator was made with keep_examples=False")
        if not self._logits:
            return np.zeros((0, self.num_classes), np.float32), np.zeros((0,), np.int64)
        logits = np.concatenate(self._logits)
        labels = np.concatenate(self._labels)
        mask = np.concatenate(self._mask)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            logits, labels, mask = (np.asarray(a) for a in multihost_utils.process_allgather(
                (logits, labels, mask), tiled=True))
        return logits[mask], labels[mask]

    @property
    def logits(self) -> np.ndarray:
        return self._examples()[0]

    @property
    def labels(self) -> np.ndarray:
        return self._examples()[1]

    def result(self) -> dict[str, Any]:
        out = finalize(self.state)
        if self.keep_examples:
            logits, labels = self._examples()
            import scipy.special

            probs = scipy.special.softmax(logits.astype(np.float64), axis=-1)
            # The prediction of the streaming metrics: lax.top_k order = first maximal logit.
            pred = np.argmax(logits, axis=-1)
            conf = probs[np.arange(len(labels)), pred]
            out["adaptive_ece"] = adaptive_ece(conf, pred == labels, self.num_bins)
            out["auc_macro"] = roc_auc_ovr_macro(probs, labels) if len(labels) else math.nan
        return out


def classification_metrics(logits, labels, mask=None, num_bins: int = 15,
                           chunk_size: int = 8192) -> dict[str, Any]:
    """Every metric in one call (host-side; see ``finalize`` for the keys, plus ``adaptive_ece``
    and ``auc_macro``).

    Args:
      logits: (N, K) float array (numpy or jax), any float dtype.
      labels: (N,) int class indices.
      mask: (N,) bool, False for padding examples (weight 0 everywhere), or None.
      num_bins: M, the number of confidence bins for ECE/MCE/adaptive/class-wise ECE.
      chunk_size: rows per device call (bounds device memory for large N).
    """
    if not isinstance(logits, jax.Array):
        logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, num_classes), got {logits.shape}")
    if not isinstance(labels, jax.Array):
        labels = np.asarray(labels)
    n, k = logits.shape
    if labels.shape != (n,):
        raise ValueError(
            f"labels must have shape ({n},) to match logits {logits.shape}, got {labels.shape}; "
            "pass integer class indices, not one-hot labels"
        )
    mask = np.ones((n,), bool) if mask is None else np.asarray(mask, bool)
    if mask.shape != (n,):
        raise ValueError(f"mask must have shape ({n},), got {mask.shape}")
    acc = Accumulator(k, num_bins)
    # Chunks padded (mask False) to a power of two: few distinct shapes, few compilations.
    rows = min(chunk_size, max(128, 1 << max(n - 1, 0).bit_length()))
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        z, y, m = logits[start:stop], labels[start:stop], mask[start:stop]
        if stop - start < rows:
            pad = rows - (stop - start)
            z = (jnp if isinstance(z, jax.Array) else np).pad(z, ((0, pad), (0, 0)))
            y = (jnp if isinstance(y, jax.Array) else np).pad(y, (0, pad))
            m = np.pad(m, (0, pad))
        acc.update(z, y, m)
    return acc.result()
