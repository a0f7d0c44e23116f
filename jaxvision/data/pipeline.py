"""The entry point: `build(config.data, split, ...)` -> Pipeline of per-process numpy batches.

Training, random-access sources (image folders, bundled datasets, any TFDS dataset kept in
memory: config.data.cache='auto' under 2 GiB, or 'memory'). The stream is global and the same
for every process count P:
  epoch e = a permutation of the split's N examples seeded by (seed, e), the same on every
  process; the epochs are concatenated into one stream, position g = e*N + i;
  global batch t = stream positions [t*B, (t+1)*B); process p feeds [t*B + p*b, t*B + (p+1)*b),
  b = B/P, and loads, decodes and augments only those examples;
  augmentation of position g is stateless, seeded by (seed, g) (never by the process).
So the concatenation over p of process p's batch t is the one-process batch t whatever P is, and
`start_step=k` starts at position k*B by index arithmetic (no file read, no decode of skipped
examples). With balanced_sampling, position g draws a class uniformly, then an example of that
class uniformly (with replacement), both seeded by (seed, g): also a pure function of g.

Training, streaming sources (TFDS datasets too large to keep in memory, or cache='none'): each
process reads only its own shard (tfds.even_splits), per-process stream as a pure function of
(seed, process, start_step):
  raw shard --(cache)--> epoch e: shuffle(seed_e, buffer) --> concatenated epochs
  --> skip((start_step*b) mod n) --> enumerate from start_step*b (= local position g)
  --> load + decode + augment with stateless seed (seed', process, g) --> batch(b)
Resume stays exact and cheap (skipping happens on raw records, before decode), but the global
batch depends on the process count: process-count invariance holds for random-access sources
only.

Evaluation (every source): every example of the process's shard once, then padding (mask
False) up to the same number of batches on every process; over all processes every example of
the split is seen exactly once.
"""

import atexit
import logging
import math
import weakref

import numpy as np

from jaxvision.data import config as data_config
from jaxvision.data import preprocess, sources
from jaxvision.data._tf import tf
from jaxvision.data.pipeline_info import PipelineInfo
from jaxvision.data.sources import DataError

log = logging.getLogger(__name__)
# tf.data.AUTOTUNE's value, spelled out: reading it at import would import TensorFlow for
# callers that only reach for `build` to hand it on (the loop's default data source).
AUTOTUNE = -1
_EPOCHS_FOREVER = 2**62


class Pipeline:
    """Iterable of this process's part of each global batch.

    Yields dicts of numpy arrays: image float32 (B/P, H, W, C), label int32 (B/P,),
    mask bool (B/P,). Training pipelines are infinite; evaluation pipelines have `len()` batches.
    `dataset` is the underlying tf.data.Dataset.
    """

    def __init__(self, dataset, info: PipelineInfo, train: bool, num_batches: int | None):
        self.dataset = dataset
        self.info = info
        self.train = train
        self.num_batches = num_batches

    def __iter__(self):
        batches = self._batches()
        _LIVE_ITERATORS.add(batches)
        return batches

    def _batches(self):
        for batch in self.dataset.as_numpy_iterator():
            yield {
                "image": batch["image"],
                "label": batch["label"].astype(np.int32, copy=False),
                "mask": batch["mask"].astype(bool, copy=False),
            }

    def __len__(self):
        if self.num_batches is None:
            raise TypeError("a training pipeline is infinite; it has no len()")
        return self.num_batches


# Decoding runs Python (Pillow, `image_file.decode_tf`) in tf.data's own threads. An iterator
# still alive when the interpreter shuts down (a training stream held by a frame of an uncaught
# exception, a global in a script) keeps those threads calling into Python while it finalizes,
# and the process never exits. Closing every live iterator at exit, while Python still runs,
# releases its tf.data threads first.
_LIVE_ITERATORS = weakref.WeakSet()


@atexit.register
def _close_live_iterators():
    for batches in list(_LIVE_ITERATORS):
        try:
            batches.close()
        except ValueError:  # running in another thread right now: nothing to close here
            pass


def _seed_pair(seed: int, salt: int) -> int:
    """Mixes (seed, salt) into one 62-bit int (numpy SeedSequence), for tf seeds."""
    return int(
        np.random.SeedSequence([int(seed) & 0xFFFFFFFF, salt]).generate_state(2, np.uint64)[0] >> 2
    )


def _options():
    opts = tf.data.Options()
    opts.deterministic = True
    opts.autotune.enabled = True
    opts.experimental_optimization.map_parallelization = True
    return opts


def build(
    config_data,
    split: str,
    *,
    global_batch_size: int,
    train: bool,
    seed: int = 0,
    start_step: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Pipeline:
    """Builds the input pipeline of `split` for this process.

    Args:
      config_data: config.data (see `default_config`).
      split: a split string ('train', 'validation', 'train[:90%]', ...) or 'auto' (validation if
        the dataset has one, else test).
      global_batch_size: examples per step over all processes; must divide by process_count.
      train: infinite shuffled augmented stream (True) or one padded evaluation pass (False).
      seed: shuffling and augmentation seed (training).
      start_step: first batch to produce (training); batch k of the stream depends only on
        (seed, k).
      process_index / process_count: default jax.process_index() / jax.process_count().
    """
    process_index, process_count = _process_index_and_count(process_index, process_count)
    _check_batching(global_batch_size, process_count, start_step)
    batch = global_batch_size // process_count
    data_config.check_cache(config_data)
    source = sources.get_source(config_data)
    split = sources.resolve_split(source, split)
    r = preprocess.resolve(config_data, source.meta)
    common = dict(
        num_classes=len(source.meta.class_names),
        class_names=list(source.meta.class_names),
        image_shape=preprocess.eval_output_shape(r),
        split=split,
        local_batch_size=batch,
        num_skipped=getattr(source, "num_skipped", 0),
        skipped=getattr(source, "skipped", ()),
        mean=r.mean,
        std=r.std,
    )
    if train and source.random_access(config_data.cache):
        table = source.table(split)
        n = len(table.labels)
        info = PipelineInfo(
            num_examples=n,
            num_local_examples=_positions_of_process(n, global_batch_size, batch, process_index),
            **common,
        )
        ds = _global_train_batches(table, config_data, r, source.meta, seed, global_batch_size,
                                   batch, process_index, start_step)
        return Pipeline(ds.prefetch(AUTOTUNE).with_options(_options()), info, True, None)

    local = source.local(split, process_index, process_count)
    info = PipelineInfo(num_examples=local.num_total, num_local_examples=local.num_local, **common)
    raw = local.raw
    if config_data.cache == "memory" or (config_data.cache == "auto" and source.small()):
        raw = raw.cache()
    if train:
        ds = _shard_train_batches(raw, local, config_data, r, source.meta, seed, batch,
                                  process_index, start_step)
        num_batches = None
    else:
        num_batches = math.ceil(local.max_local / batch)
        ds = _eval_batches(raw, local, r, source.meta, info, batch, num_batches)
    return Pipeline(ds.prefetch(AUTOTUNE).with_options(_options()), info, train, num_batches)


def _process_index_and_count(process_index: int | None,
                             process_count: int | None) -> tuple[int, int]:
    """(process_index, process_count), defaulting to JAX's; ValueError when out of range."""
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    return process_index, process_count


def _check_batching(global_batch_size: int, process_count: int, start_step: int) -> None:
    """ValueError unless the global batch splits evenly over the processes and start_step >= 0."""
    if global_batch_size <= 0 or global_batch_size % process_count:
        raise ValueError(
            f"global batch size {global_batch_size} must be a positive multiple of the process "
            f"count {process_count}; choose a batch size divisible by {process_count}."
        )
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")


def _augmented_batches(ds, load, r, meta, cfg, batch):
    """Training stream elements -> ``load`` (encoded image, label, augmentation ``seed`` pair) ->
    decoded, augmented images, in batches of ``batch``."""

    def transform(image, ex):
        return preprocess.train_transform(image, ex["seed"], r, cfg)

    ds = _decode_and_transform(ds.map(load, num_parallel_calls=AUTOTUNE), r, meta, transform)
    return ds.batch(batch, drop_remainder=True)


def _global_train_batches(table, cfg, r, meta, seed, global_batch, batch, process_index,
                          start_step):
    """This process's batches of the global training stream of a random-access source (see the
    module docstring): the same global batches for any process count."""
    ds = _global_stream(table, cfg, seed, global_batch, batch, process_index, start_step)
    keys = tf.constant(table.keys, tf.string)
    labels = tf.constant(table.labels, tf.int32)
    aug_seed = _seed_pair(seed, 1_000_003)  # the same on every process

    def load(g, idx):
        return {
            "encoded": table.load(tf.gather(keys, idx)),
            "label": tf.gather(labels, idx),
            "seed": tf.stack([tf.constant(aug_seed, tf.int64), g]),
        }

    return _augmented_batches(ds, load, r, meta, cfg, batch)


def _shard_train_batches(raw, local, cfg, r, meta, seed, batch, process_index, start_step):
    """The training batches of a streaming source, from this process's own shard."""
    ds = _train_stream(raw, local, cfg, seed, process_index, start_step * batch)
    aug_seed = _seed_pair(seed, 1_000_003 + process_index)

    def load(g, ex):
        ex = local.load(ex)
        seed = tf.stack([tf.constant(aug_seed, tf.int64), g])
        return {"encoded": ex["image"], "label": ex["label"], "seed": seed}

    return _augmented_batches(ds, load, r, meta, cfg, batch)


def _eval_batches(raw, local, r, meta, info, batch, num_batches):
    """Every example of this process's shard once, then masked filler up to ``num_batches``
    (the same count on every process)."""

    def load(ex):
        ex = local.load(ex)
        return {"encoded": ex["image"], "label": ex["label"]}

    def transform(image, ex):
        del ex
        return preprocess.eval_transform(image, r)

    ds = raw.map(load, num_parallel_calls=AUTOTUNE)
    ds = _decode_and_transform(ds, r, meta, transform)
    pad = num_batches * batch - local.num_local
    if pad:
        filler = {
            "image": tf.zeros(info.image_shape, tf.float32),
            "label": tf.constant(0, tf.int32),
            "mask": tf.constant(False),
        }
        ds = ds.concatenate(tf.data.Dataset.from_tensors(filler).repeat(pad))
    return ds.batch(batch, drop_remainder=True)


_DECODE_CHUNK = 64  # images per Python decode call when all images have one size


def _decode_and_transform(ds, r, meta, transform):
    """Elements {'encoded': string, 'label', ...} -> {'image': float32, 'label', 'mask'}, with
    `transform(uint8 image, element)` after the one decoder (`preprocess.decode`).

    Images of any size are decoded one per call, in the parallel map that transforms them. When
    every image of the dataset has one size (TFDS image features with a fixed shape: mnist,
    cifar, the bundled datasets), chunks of _DECODE_CHUNK are decoded per Python call and the
    transforms follow per image: the same pixels, a fraction of the per-call cost.
    """

    def finish(ex, image):
        return {"image": transform(image, ex), "label": ex["label"], "mask": tf.constant(True)}

    height, width = meta.image_shape[:2]
    if height is None or width is None:
        return ds.map(
            lambda ex: finish(ex, preprocess.decode(ex["encoded"], r)), num_parallel_calls=AUTOTUNE
        )

    def decode_chunk(ex):
        rest = {k: v for k, v in ex.items() if k != "encoded"}
        return {**rest, "pixels": preprocess.decode_many(ex["encoded"], r, height, width)}

    ds = ds.batch(_DECODE_CHUNK).map(decode_chunk, num_parallel_calls=AUTOTUNE).unbatch()
    return ds.map(lambda ex: finish(ex, ex["pixels"]), num_parallel_calls=AUTOTUNE)


def _positions_of_process(n, global_batch, batch, process_index) -> int:
    """How many of the first n stream positions process `process_index` feeds (one epoch)."""
    full, rest = divmod(n, global_batch)
    return full * batch + min(max(rest - process_index * batch, 0), batch)


def _global_stream(table, cfg, seed, global_batch, batch, process_index, start_step):
    """(g, example index) of the positions g this process feeds, from global batch start_step.

    Position g belongs to process (g mod B) // b; each process computes the same permutations
    and keeps its own positions, so it reads no example it does not feed.
    """
    n = len(table.labels)
    start = start_step * global_batch  # first global position

    def mine(g):
        return tf.equal((g % global_batch) // batch, process_index)

    if cfg.balanced_sampling:
        # Class uniform, then an example of it uniform (with replacement), per position.
        present, counts = np.unique(table.labels, return_counts=True)
        order = np.argsort(table.labels, kind="stable").astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        counts_t, offsets_t = tf.constant(counts, tf.int64), tf.constant(offsets, tf.int64)
        order_t = tf.constant(order)
        cls_seed, ex_seed = _seed_pair(seed, 11), _seed_pair(seed, 13)

        def draw(g):
            c = tf.random.stateless_uniform(
                [], tf.stack([tf.constant(cls_seed, tf.int64), g]), 0, len(present), tf.int64
            )
            j = tf.random.stateless_uniform(
                [], tf.stack([tf.constant(ex_seed, tf.int64), g]), 0, counts_t[c], tf.int64
            )
            return g, tf.gather(order_t, offsets_t[c] + j)

        # Local counter k -> global position: step k // b, slot p*b + k % b.
        ds = tf.data.Dataset.range(start_step * batch, _EPOCHS_FOREVER)
        ds = ds.map(lambda k: (k // batch) * global_batch + process_index * batch + k % batch)
        return ds.map(draw)

    perm_seed = _seed_pair(seed, 7)

    def epoch(e):
        g = tf.range(e * n, (e + 1) * n, dtype=tf.int64)
        perm = tf.random.experimental.stateless_shuffle(  # Philox: the same on any host
            tf.range(n, dtype=tf.int64),
            seed=tf.stack([tf.constant(perm_seed, tf.int64), e]),
            alg="philox",
        )
        keep = tf.logical_and(mine(g), g >= start)
        return tf.data.Dataset.from_tensor_slices(
            (tf.boolean_mask(g, keep), tf.boolean_mask(perm, keep))
        )

    return tf.data.Dataset.range(start // n, _EPOCHS_FOREVER).flat_map(epoch)


def _train_stream(raw, local, cfg, seed, process_index, offset):
    """(g, raw element) pairs of the infinite training stream from position `offset`."""
    n = local.num_local
    if n == 0:
        raise DataError("this process's shard of the training split is empty; use fewer processes")
    buffer = max(1, min(int(cfg.shuffle_buffer), n))
    base_seed = _seed_pair(seed, 7 + process_index)

    if cfg.balanced_sampling:
        labels = np.array([int(x["label"]) for x in raw.map(lambda ex: {"label": ex["label"]})])
        present = sorted(set(labels.tolist()))
        streams = []
        for c in present:
            n_c = int((labels == c).sum())
            cls = raw.filter(lambda ex, c=c: tf.equal(ex["label"], c))
            cls_seed = _seed_pair(base_seed, 100 + c)
            streams.append(
                tf.data.Dataset.range(_EPOCHS_FOREVER).flat_map(
                    lambda e, cls=cls, n_c=n_c, s=cls_seed: cls.shuffle(
                        min(buffer, n_c), seed=s + e, reshuffle_each_iteration=False
                    )
                )
            )
        ds = tf.data.Dataset.sample_from_datasets(
            streams,
            weights=[1.0 / len(present)] * len(present),
            seed=_seed_pair(base_seed, 3),
            rerandomize_each_iteration=False,
        )
        ds = ds.skip(offset)
    else:
        first_epoch, within = divmod(offset, n)
        ds = tf.data.Dataset.range(first_epoch, _EPOCHS_FOREVER).flat_map(
            lambda e: raw.shuffle(buffer, seed=base_seed + e, reshuffle_each_iteration=False)
        )
        ds = ds.skip(within)
    return ds.enumerate(start=offset)
