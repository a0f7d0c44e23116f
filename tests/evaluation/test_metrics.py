"""Metrics against sklearn and numpy references written from the definitions."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from sklearn import metrics as skm

from jaxvision.evaluation import metrics
from tests.evaluation import references as ref

ATOL = 1e-5
STREAMING_SCALARS = ("top1", "top5", "nll", "brier", "ece", "mce", "classwise_ece",
                     "balanced_accuracy", "f1_macro", "precision_macro", "recall_macro")


def make_data(n, k, seed=0, scale=2.5, calibrated=True):
    """Logits and labels; labels drawn from softmax(logits) (a calibrated model) or uniform."""
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(n, k)) * scale).astype(np.float32)
    if calibrated:
        p = ref.softmax(logits)
        labels = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    else:
        labels = rng.integers(0, k, n)
    return logits, labels.astype(np.int32)


def assert_close(actual, expected, atol=ATOL):
    chex.assert_trees_all_close(np.float64(actual), np.float64(expected), atol=atol, rtol=0)


@pytest.mark.parametrize("k", [3, 10])
def test_classification_metrics_match_references(k):
    logits, labels = make_data(600, k, seed=k)
    rng = np.random.default_rng(1)
    mask = rng.random(600) > 0.2
    labels_with_padding = np.where(mask, labels, -1)  # padding labels must be ignored
    out = metrics.classification_metrics(logits, labels_with_padding, mask)

    z, y = logits[mask], labels[mask]
    p = ref.softmax(z)
    pred = p.argmax(1)
    classes = list(range(k))
    assert out["num_examples"] == mask.sum()
    assert_close(out["top1"], skm.accuracy_score(y, pred))
    assert_close(out["top5"], skm.top_k_accuracy_score(y, p, k=min(5, k), labels=classes))
    assert_close(out["nll"], skm.log_loss(y, p, labels=classes))
    assert_close(out["brier"], ref.brier(p, y))
    ece, mce = ref.ece_mce(p, y)
    assert_close(out["ece"], ece)
    assert_close(out["mce"], mce)
    assert_close(out["adaptive_ece"], ref.adaptive_ece(p, y))
    assert_close(out["classwise_ece"], ref.classwise_ece(p, y))
    assert_close(out["auc_macro"], skm.roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert_close(out["balanced_accuracy"], skm.balanced_accuracy_score(y, pred))
    assert_close(out["f1_macro"], skm.f1_score(y, pred, average="macro"))
    prec, rec, f1, support = skm.precision_recall_fscore_support(
        y, pred, labels=classes, zero_division=0)
    chex.assert_trees_all_close(
        (out["precision"], out["recall"], out["f1"]), (prec, rec, f1), atol=ATOL, rtol=0)
    np.testing.assert_array_equal(out["support"], support)
    np.testing.assert_array_equal(out["confusion_matrix"],
                                  skm.confusion_matrix(y, pred, labels=classes))


def test_binary_auc_and_absent_class_macro_averages_like_sklearn():
    logits, labels = make_data(300, 2, seed=3)
    out = metrics.classification_metrics(logits, labels)
    p = ref.softmax(logits)
    assert_close(out["auc_macro"], skm.roc_auc_score(labels, p[:, 1]))
    assert out["top5"] == 1.0 and out["top5_k"] == 2  # k capped at the class count

    # Class 4 never occurs (neither label nor prediction): sklearn's default macro average over
    # the classes present is what we report.
    logits, labels = make_data(200, 5, seed=4, calibrated=False)
    logits[:, 4] = -50.0
    labels = labels % 4
    out = metrics.classification_metrics(logits, labels)
    pred = logits.argmax(1)
    assert_close(out["f1_macro"], skm.f1_score(labels, pred, average="macro"))
    assert_close(out["balanced_accuracy"], skm.balanced_accuracy_score(labels, pred))
    assert out["precision"][4] == 0 and out["support"][4] == 0


def test_all_correct_at_confidence_one_has_zero_ece():
    k, n = 4, 40
    labels = np.arange(n) % k
    logits = np.full((n, k), -1e4, np.float32)
    logits[np.arange(n), labels] = 0.0  # p = one-hot exactly in float32
    logits[0, 1] = -np.inf  # masked-out logits are allowed
    out = metrics.classification_metrics(logits, labels)
    assert out["top1"] == 1.0
    assert out["ece"] == 0.0 and out["mce"] == 0.0 and out["adaptive_ece"] == 0.0
    assert out["classwise_ece"] == 0.0 and out["brier"] == 0.0 and out["nll"] == 0.0
    np.testing.assert_array_equal(out["reliability"]["bin_count"], [0, 0, 0, 0] * 3 + [0, 0, n])


def test_confidences_on_bin_edges_go_to_the_lower_bin():
    # Values exactly on edges of M = 4 bins: ((m-1)/4, m/4], and 0 -> first bin.
    idx = np.asarray(metrics.bin_index(jnp.array([0.0, 0.25, 0.2500001, 0.5, 0.75, 1.0]), 4))
    np.testing.assert_array_equal(idx, [0, 0, 1, 1, 2, 3])

    # End to end with exact float32 confidences 0.25 (4 equal logits), 0.5 and 1.0.
    neg = -1e4
    logits = np.array([
        [0, 0, 0, 0],        # conf 0.25, predicts 0, label 0: correct
        [0, 0, 0, 0],        # conf 0.25, predicts 0, label 2: wrong
        [0, 0, neg, neg],    # conf 0.5, predicts 0, label 1: wrong
        [0, neg, neg, neg],  # conf 1.0, correct
        [neg, 0, neg, neg],  # conf 1.0, predicts 1, label 3: wrong
    ], np.float32)
    labels = np.array([0, 2, 1, 0, 3])
    out = metrics.classification_metrics(logits, labels, num_bins=4)
    np.testing.assert_array_equal(out["reliability"]["bin_count"], [2, 1, 0, 2])
    # Hand computation: bins (0, .25]: acc 1/2 conf .25; (.25, .5]: acc 0 conf .5; (.75, 1]: acc
    # 1/2 conf 1.
    assert_close(out["ece"], 2 / 5 * 0.25 + 1 / 5 * 0.5 + 2 / 5 * 0.5)
    assert_close(out["mce"], 0.5)
    p = ref.softmax(logits)
    ece, mce = ref.ece_mce(p, labels, num_bins=4)
    assert_close(out["ece"], ece)
    assert_close(out["classwise_ece"], ref.classwise_ece(p, labels, num_bins=4))


def _padded_batches(logits, labels, sizes, batch, rng):
    """Split into batches of the given sizes, each padded to ``batch`` rows with garbage."""
    start = 0
    for s in sizes:
        z = rng.normal(size=(batch, logits.shape[1])).astype(np.float32) * 9
        y = rng.integers(-1, logits.shape[1], batch).astype(np.int32)
        m = np.zeros(batch, bool)
        z[:s], y[:s], m[:s] = logits[start:start + s], labels[start:start + s], True
        start += s
        yield z, y, m


def test_streaming_over_uneven_padded_batches_equals_one_shot():
    k = 7
    logits, labels = make_data(211, k, seed=5)
    sizes = [64, 3, 50, 1, 64, 29]
    assert sum(sizes) == 211
    state = metrics.init_state(k)
    halves = [metrics.init_state(k), metrics.init_state(k)]
    acc = metrics.Accumulator(k)
    rng = np.random.default_rng(0)
    for i, (z, y, m) in enumerate(_padded_batches(logits, labels, sizes, 64, rng)):
        state = metrics.update_state(state, z, y, m)
        halves[i % 2] = metrics.update_state(halves[i % 2], z, y, m)
        acc.update(z, y, m)
    streamed = metrics.finalize(state)
    one_shot = metrics.classification_metrics(logits, labels)
    for key in STREAMING_SCALARS:
        assert_close(streamed[key], one_shot[key])
    np.testing.assert_array_equal(streamed["confusion_matrix"], one_shot["confusion_matrix"])
    accumulated = acc.result()
    for key in (*STREAMING_SCALARS, "auc_macro", "adaptive_ece"):
        assert_close(accumulated[key], one_shot[key])
    np.testing.assert_array_equal(acc.labels, labels)

    # merge_states of two disjoint parts == the whole.
    merged = metrics.finalize(metrics.merge_states(*halves))
    for key in STREAMING_SCALARS:
        assert_close(merged[key], one_shot[key])


def test_eight_devices_equal_one():
    assert len(jax.devices()) == 8
    k = 6
    logits, labels = make_data(128, k, seed=6)
    mask = np.arange(128) < 117  # the last rows are padding
    one = metrics.finalize(metrics.update_state(metrics.init_state(k), logits, labels, mask))

    mesh = Mesh(np.array(jax.devices()), ("data",))
    shard = NamedSharding(mesh, P("data"))
    z, y, m = (jax.device_put(a, shard) for a in (logits, labels, mask))
    chex.assert_equal(len(z.sharding.device_set), 8)

    # (a) jit over the mesh: the sums inside update_state are global.
    jitted = jax.jit(metrics.update_state)(metrics.init_state(k), z, y, m)
    # (b) shard_map: per-device statistics, then psum.
    def per_device(z, y, m):
        s = metrics.update_state(metrics.init_state(k), z, y, m)
        return jax.lax.psum(s, "data")

    summed = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P("data"),) * 3,
                                   out_specs=P()))(z, y, m)
    for state in (jitted, summed):
        out = metrics.finalize(state)
        for key in STREAMING_SCALARS:
            assert_close(out[key], one[key])
        np.testing.assert_array_equal(out["confusion_matrix"], one["confusion_matrix"])
        chex.assert_trees_all_close(metrics.to_host(state), metrics.to_host(
            metrics.update_state(metrics.init_state(k), logits, labels, mask)), atol=1e-4)


def test_low_precision_logits_are_computed_in_float32():
    logits, labels = make_data(100, 5, seed=7)
    bf16 = jnp.asarray(logits, jnp.bfloat16)
    out = metrics.classification_metrics(bf16, labels)
    p = ref.softmax(np.asarray(bf16.astype(jnp.float32)))
    assert_close(out["nll"], skm.log_loss(labels, p, labels=range(5)))


def test_bad_input_gets_clear_errors():
    logits, labels = make_data(10, 3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        metrics.classification_metrics(logits, labels + 3)
    with pytest.raises(ValueError, match="one-hot"):
        metrics.classification_metrics(logits, np.eye(3)[labels])
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        metrics.update_state(metrics.init_state(3), logits[:, :2], labels)
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        metrics.init_state(1)


def test_all_masked_gives_nan_not_an_error():
    logits, labels = make_data(8, 3)
    out = metrics.classification_metrics(logits, labels, np.zeros(8, bool))
    assert out["num_examples"] == 0 and np.isnan(out["top1"]) and np.isnan(out["auc_macro"])


def test_adaptive_ece_does_not_depend_on_the_order_of_tied_examples():
    rng = np.random.default_rng(3)
    conf = np.repeat([0.3, 0.6, 0.9], [40, 37, 23])  # ties straddle the equal-mass boundaries
    correct = rng.random(100) < conf
    values = {metrics.adaptive_ece(conf[p], correct[p], num_bins=7)
              for p in [np.arange(100), *(rng.permutation(100) for _ in range(5))]}
    assert len(values) == 1
    # The value is the equal-mass sum over the canonical order (wrong before right in a tie).
    order = np.lexsort((correct, conf))
    assert_close(metrics.adaptive_ece(conf, correct, num_bins=7),
                 _adaptive_ece_by_hand(conf[order], correct[order].astype(float), 7))


def _adaptive_ece_by_hand(conf, correct, bins):
    n, total, start = len(conf), 0.0, 0
    for i in range(bins):
        size = n // bins + (1 if i < n % bins else 0)
        total += abs(correct[start:start + size].sum() - conf[start:start + size].sum())
        start += size
    return total / n
