"""Where examples come from: TFDS datasets (incl. the bundled ones) and image folders.

A source hands the pipeline, for one split and one process, a `Local`: a tf.data.Dataset of
cheap "raw" elements in a fixed order (TFDS: the encoded record; folder: the file path), a
`load` function turning a raw element into `{'image': encoded bytes, 'label': int32}` (run after
any skipping, so skipping reads no files), and the example counts.

Sources with random access (image folders; TFDS datasets kept in memory, see
`TfdsSource.random_access`) also hand out a `Table`: every example of the split addressable by
its index, the same on every process. Training pipelines use it to draw one global, process-count
independent order and let each process load only the examples it feeds.
"""

import dataclasses
import functools
import logging
import math
import os

import numpy as np

from jaxvision.data import bundled_arrays, bundled_info, image_file, image_listing, preprocess
from jaxvision.data._tf import tf, tfds


def _bundled():
    """``jaxvision.data.bundled``, imported on first use: defining its TFDS builders imports
    TensorFlow, which commands needing only DataError or a run's metadata should not pay for."""
    from jaxvision.data import bundled

    return bundled

log = logging.getLogger(__name__)

SKIPPED_FILES = "skipped_files.txt"  # in the workdir: every file skip_corrupt left out
_SKIPPED_LOGGED = 5  # names in the log line; all of them go to SKIPPED_FILES
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "test": "test",
    "testing": "test",
}


class DataError(ValueError):
    """Bad data or data configuration; the message names the problem and the fix."""


@dataclasses.dataclass
class Local:
    raw: "tf.data.Dataset"
    load: callable
    num_local: int  # examples of this process's shard
    num_total: int  # examples of the split, all processes
    max_local: int  # largest shard over processes (sets the eval batch count)


@dataclasses.dataclass(frozen=True)
class Table:
    """Every example of a split by index, identical on every process.

    keys: numpy object (N,) of bytes: encoded images (TFDS) or file paths (image folders).
    labels: int32 (N,).
    load: tf function key (string scalar) -> encoded image bytes (string scalar).
    """

    keys: np.ndarray
    labels: np.ndarray
    load: callable


def get_source(cfg):
    """The source named by config.data (cached per configuration)."""
    if cfg.name == "image_folder":
        if not cfg.path:
            raise DataError("config.data.name='image_folder' needs config.data.path=<folder root>")
        return FolderSource(
            os.path.abspath(os.path.expanduser(cfg.path)),
            bool(cfg.skip_corrupt),
            float(cfg.val_fraction),
            float(cfg.test_fraction),
            int(cfg.split_seed),
        )
    if cfg.name in bundled_info.SHAPES:
        return BundledSource(cfg.name, cfg.data_dir)
    return TfdsSource(cfg.name, cfg.data_dir, bool(cfg.download))


def resolve_split(source, split: str, role: str | None = None) -> str:
    """'auto' -> 'validation' when it exists, else 'test' (role 'test': 'test' first)."""
    if split != "auto":
        return split
    order = ("test", "validation") if role == "test" else ("validation", "test")
    for name in order:
        if source.has_split(name):
            return name
    raise DataError(f"dataset {source.meta.name!r} has neither a validation nor a test split")


# ----------------------------------------------------------------------------- TFDS
_counts_cache: dict = {}
_labels_cache: dict = {}
_table_cache: dict = {}  # (name, data_dir, split) -> Table, insertion-ordered
_TABLE_CACHE_SIZE = 2


def _unknown_dataset_message(name):
    return (
        f"Unknown dataset {name!r}. Use a TFDS dataset name (e.g. 'cifar10', 'imagenet2012'), "
        f"a bundled dataset that builds offline ({', '.join(_bundled().BUNDLED)}), or your own "
        "images with config.data.name='image_folder' and config.data.path='/path/to/root' "
        "(root/<class>/*.jpg or root/<split>/<class>/*.jpg)."
    )


class TfdsSource:
    """A TFDS dataset by name; bundled datasets are built offline on first use."""

    def __init__(self, name: str, data_dir: str | None, download: bool = True):
        self.name, self.data_dir = name, data_dir
        if name in _bundled().BUILDERS:
            self.builder = _bundled().builder(name, data_dir)
        else:
            try:
                self.builder = tfds.builder(name, data_dir=data_dir)
            except tfds.core.registered.DatasetNotFoundError:
                raise DataError(_unknown_dataset_message(name)) from None
            if not self.builder.is_prepared() and not _mocked():
                if not download:
                    raise DataError(
                        f"TFDS dataset {name!r} is not prepared in {self.builder.data_dir}; set "
                        "config.data.data_dir to where it is, or config.data.download=True."
                    )
                try:
                    self.builder.download_and_prepare()
                except Exception as e:  # network, manual-download datasets, ...
                    raise DataError(
                        f"could not download/prepare TFDS dataset {name!r} into "
                        f"{self.builder.data_dir}: {type(e).__name__}: {str(e)[:500]}. Prepare it "
                        "there first, point config.data.data_dir at a prepared copy, or use a "
                        f"bundled dataset ({', '.join(_bundled().BUNDLED)})."
                    ) from None
        info = self.builder.info
        keys = info.supervised_keys or ("image", "label")
        self.image_key, self.label_key = keys[0], keys[1]
        feats = info.features
        if self.image_key not in feats or self.label_key not in feats:
            raise DataError(f"TFDS dataset {name!r} has no (image, label) features: {feats}")
        label = feats[self.label_key]
        if not hasattr(label, "num_classes"):
            raise DataError(
                f"TFDS dataset {name!r}: feature {self.label_key!r} is not a class label"
            )
        names = tuple(label.names) if label.names else tuple(map(str, range(label.num_classes)))
        h, w, c = (tuple(feats[self.image_key].shape) + (None, None, None))[:3]
        self.channels = c if c in (1, 3) else 3
        self.meta = preprocess.Meta(name, (h, w, self.channels), names)
        try:
            self._splits = dict(info.splits)
        except Exception:
            self._splits = {}

    @property
    def version(self) -> str:
        """The dataset's TFDS version ('1.0.0')."""
        return str(self.builder.info.version)

    def has_split(self, split: str) -> bool:
        if self._splits:
            return split in self._splits
        return split in ("train", "validation", "test") and self._count(split) > 0

    def small(self) -> bool:
        """Small enough to keep encoded in memory (cache='auto')."""
        size = getattr(self.builder.info, "dataset_size", None)
        try:
            return int(size) < 2 * 2**30 if size else True
        except (TypeError, ValueError):
            return True

    def random_access(self, cache: str) -> bool:
        """Whether training reads this dataset through a `Table` (all encoded examples of the split
        in memory on every process): cache='memory', or cache='auto' and `small()`. Otherwise
        each process streams its own shard of the TFRecord files."""
        return cache == "memory" or (cache == "auto" and self.small())

    def table(self, split: str) -> Table:
        """All encoded examples of `split` in memory (read once per process and kept)."""
        key = (self.name, self.data_dir, str(split))
        if key not in _table_cache:
            keys, labels = [], []
            for b in self._dataset(split).batch(4096).as_numpy_iterator():
                keys.append(np.asarray(b["image"], object))
                labels.append(np.asarray(b["label"], np.int32))
            if not keys:
                raise DataError(f"split {split!r} of {self.name!r} has no examples")
            while len(_table_cache) >= _TABLE_CACHE_SIZE:  # bounded memory: oldest out
                _table_cache.pop(next(iter(_table_cache)))
            _table_cache[key] = Table(np.concatenate(keys), np.concatenate(labels), lambda k: k)
        return _table_cache[key]

    def _dataset(self, split, skip_image=True):
        decoders = {self.image_key: tfds.decode.SkipDecoding()} if skip_image else None
        try:
            ds = self.builder.as_dataset(split=split, shuffle_files=False, decoders=decoders)
        except (ValueError, KeyError, AssertionError) as e:
            raise DataError(
                f"TFDS dataset {self.name!r} has no split {split!r} ({e}); available: "
                f"{sorted(self._splits) or ['train', 'validation', 'test']}"
            ) from None
        ik, lk = self.image_key, self.label_key
        return ds.map(lambda ex: {"image": ex[ik], "label": tf.cast(ex[lk], tf.int32)})

    def _count(self, split) -> int:
        if self._splits:
            try:
                return int(self.builder.info.splits[split].num_examples)
            except Exception as e:
                raise DataError(
                    f"TFDS dataset {self.name!r}: bad split {split!r} ({e}); available: "
                    f"{sorted(self._splits)}"
                ) from None
        key = (self.name, self.data_dir, str(split))
        if key not in _counts_cache:  # mocked or unprepared info: count the records
            try:
                ds = self._dataset(split).map(lambda ex: ex["label"])
                _counts_cache[key] = int(ds.reduce(np.int64(0), lambda n, _: n + 1))
            except DataError:
                _counts_cache[key] = 0
        return _counts_cache[key]

    def num_examples(self, split: str) -> int:
        return self._count(split)

    def local(self, split: str, process_index: int, process_count: int) -> Local:
        total = self._count(split)
        if total == 0:
            raise DataError(f"split {split!r} of {self.name!r} has no examples")
        if self._splits:
            # Each process reads only its own files/records (TFDS even splits).
            subs = tfds.even_splits(split, process_count)
            counts = [int(self.builder.info.splits[s].num_examples) for s in subs]
            raw = self._dataset(subs[process_index])
            n = counts[process_index]
            max_local = max(counts)
        else:
            raw = self._dataset(split).shard(process_count, process_index)
            n = len(range(process_index, total, process_count))
            max_local = math.ceil(total / process_count)
        return Local(raw, lambda ex: ex, n, total, max_local)

    def labels(self, split: str) -> np.ndarray:
        key = (self.name, self.data_dir, str(split))
        if key not in _labels_cache:
            ds = self._dataset(split).map(lambda ex: ex["label"]).batch(4096)
            parts = [b for b in ds.as_numpy_iterator()]
            _labels_cache[key] = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0)
        return _labels_cache[key]


class BundledSource(TfdsSource):
    """A bundled dataset (``jaxvision.data.bundled_arrays``): its name, image shape, classes,
    splits and split sizes are known without TensorFlow, so a run that never builds a tf.data
    pipeline of it (device-held training, ``evaluate``) never imports TensorFlow. Its TFDS
    builder (built offline into ``data_dir`` on first use) is made only when a tf.data pipeline
    reads the records, and gives the same examples."""

    def __init__(self, name: str, data_dir: str | None):
        self.name, self.data_dir = name, data_dir
        self.image_key, self.label_key = "image", "label"
        self.channels = bundled_info.SHAPES[name][2]
        self.meta = preprocess.Meta(name, bundled_info.SHAPES[name],
                                    tuple(bundled_info.CLASS_NAMES[name]))
        self._builder = None

    @property
    def builder(self):
        if self._builder is None:
            self._builder = _bundled().builder(self.name, self.data_dir)
        return self._builder

    @property
    def _splits(self) -> dict:
        return dict(self.builder.info.splits)

    @property
    def version(self) -> str:
        return bundled_arrays.VERSION

    def has_split(self, split: str) -> bool:
        return split in bundled_arrays.SPLITS or super().has_split(split)

    def small(self) -> bool:
        return True

    def num_examples(self, split: str) -> int:
        if split in bundled_arrays.SPLITS:
            return len(bundled_arrays.split_arrays(self.name, split)[1])
        return super().num_examples(split)  # TFDS slicing ('train[:90%]'): TFDS resolves it

    def labels(self, split: str) -> np.ndarray:
        if split in bundled_arrays.SPLITS:
            return bundled_arrays.split_arrays(self.name, split)[1].astype(np.int64)
        return super().labels(split)


def _mocked() -> bool:
    """True inside tfds.testing.mock_data (its builders are never prepared)."""
    as_ds = tfds.core.DatasetBuilder.as_dataset
    return "mock" in getattr(as_ds, "__module__", "") or "mock" in repr(as_ds)


# ----------------------------------------------------------------------------- image folders
@dataclasses.dataclass(frozen=True)
class FolderIndex:
    class_names: tuple
    splits: dict  # split -> (paths tuple, labels np.ndarray)
    skipped: tuple  # (path, reason) of files skipped as corrupt


def _subdirs(path):
    return sorted(
        d
        for d in os.listdir(path)
        if not d.startswith(".") and os.path.isdir(os.path.join(path, d))
    )


@functools.lru_cache(maxsize=16)
def index_folder(
    root, skip_corrupt, val_fraction, test_fraction, split_seed, _mtime
) -> FolderIndex:
    """Lists the image files under root (``image_listing.list_images``, the listing predict uses
    too), validates each with the one decoder and builds the splits."""
    del _mtime  # part of the cache key only
    if not os.path.isdir(root):
        raise DataError(f"image folder {root!r} does not exist (config.data.path)")
    top = _subdirs(root)
    if not top:
        raise DataError(f"image folder {root!r} has no class sub-folders (root/<class>/*.jpg)")
    layout_split = all(d.lower() in SPLIT_ALIASES for d in top)
    split_dirs = (
        {SPLIT_ALIASES[d.lower()]: os.path.join(root, d) for d in top}
        if layout_split
        else {"all": root}
    )
    class_names = sorted({c for d in split_dirs.values() for c in _subdirs(d)})
    if not class_names:
        raise DataError(
            f"image folder {root!r}: no class folders under {list(split_dirs.values())}"
        )
    bad, found = [], {}
    for split, sdir in split_dirs.items():
        paths, labels = [], []
        for label, cname in enumerate(class_names):
            cdir = os.path.join(sdir, cname)
            if not os.path.isdir(cdir):
                continue
            files = image_listing.list_images(cdir)
            good = []
            for f in files:
                reason = image_file.check(f)
                if reason:
                    bad.append((f, reason))
                else:
                    good.append(f)
            if not files:
                raise DataError(
                    f"class folder {cdir!r} is empty; add images to it or remove the folder"
                )
            if not good and (skip_corrupt or not bad):
                raise DataError(f"class folder {cdir!r} has no readable images")
            paths += good
            labels += [label] * len(good)
        found[split] = (paths, np.asarray(labels, np.int64))
    if bad and not skip_corrupt:
        listing = "\n".join(f"  {p}: {r}" for p, r in bad[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise DataError(
            f"{len(bad)} file(s) in image folder {root!r} cannot be read as images:\n{listing}{more}"
            "\nRemove them, or set config.data.skip_corrupt=True to skip them."
        )
    if bad:
        shown = "; ".join(f"{p}: {r}" for p, r in bad[:_SKIPPED_LOGGED])
        more = f"; ... ({len(bad) - _SKIPPED_LOGGED} more)" if len(bad) > _SKIPPED_LOGGED else ""
        log.warning(
            "image folder %s: skipped %d unreadable file(s) (skip_corrupt=True; all listed in "
            "WORKDIR/%s): %s%s", root, len(bad), SKIPPED_FILES, shown, more,
        )
    if "all" in found:
        paths, labels = found.pop("all")
        parts = bundled_arrays.stratified_split(
            labels, {"validation": val_fraction, "test": test_fraction}, seed=split_seed
        )
        for split, idx in parts.items():
            found[split] = ([paths[i] for i in idx], labels[idx])
    splits = {s: (tuple(p), lab) for s, (p, lab) in found.items()}
    return FolderIndex(tuple(class_names), splits, tuple(bad))


def write_skipped_files(skipped, workdir: str) -> str | None:
    """Writes `(path, reason)` pairs, one `path<TAB>reason` line each, to WORKDIR/SKIPPED_FILES
    (replaced each run); returns its path, or None (and removes a stale file) when none."""
    out = os.path.join(workdir, SKIPPED_FILES)
    if not skipped:
        if os.path.exists(out):
            os.remove(out)
        return None
    with open(out, "w", encoding="utf-8") as f:
        f.writelines(f"{path}\t{reason}\n" for path, reason in skipped)
    return out


class FolderSource:
    """Images in root/<class>/* (split by ratio, stratified) or root/<split>/<class>/*."""

    def __init__(self, root, skip_corrupt, val_fraction, test_fraction, split_seed):
        self.root = root
        # Directory mtimes change when files or folders are added/removed: re-index then.
        mtime = tuple(os.stat(d).st_mtime_ns for d, _, _ in os.walk(root))
        self.index = index_folder(
            root, skip_corrupt, val_fraction, test_fraction, split_seed, mtime
        )
        self.channels = 3
        self.meta = preprocess.Meta("image_folder", (None, None, 3), self.index.class_names)
        self.skipped = self.index.skipped
        self.num_skipped = len(self.skipped)

    def has_split(self, split):
        return split in self.index.splits and len(self.index.splits[split][0]) > 0

    def small(self):
        return True

    def _split(self, split):
        if split not in self.index.splits:
            raise DataError(
                f"image folder {self.root!r} has no split {split!r}; available: "
                f"{sorted(self.index.splits)}"
            )
        return self.index.splits[split]

    def num_examples(self, split):
        return len(self._split(split)[0])

    def random_access(self, cache: str) -> bool:
        """Always: a file is read by its path."""
        del cache
        return True

    def table(self, split) -> Table:
        """The split's file paths and labels; `load` reads a file."""
        paths, labels = self._split(split)
        if not paths:
            raise DataError(f"split {split!r} of image folder {self.root!r} has no images")
        keys = np.empty(len(paths), object)
        keys[:] = [os.fsencode(p) for p in paths]
        return Table(keys, np.asarray(labels, np.int32), tf.io.read_file)

    def labels(self, split):
        return self._split(split)[1]

    def local(self, split, process_index, process_count):
        paths, labels = self._split(split)
        if not paths:
            raise DataError(f"split {split!r} of image folder {self.root!r} has no images")
        paths = list(paths[process_index::process_count])
        labels = labels[process_index::process_count].astype(np.int32)
        raw = tf.data.Dataset.from_tensor_slices(
            {"path": tf.constant(paths, tf.string, [len(paths)]), "label": labels}
        )

        def load(ex):
            return {"image": tf.io.read_file(ex["path"]), "label": ex["label"]}

        total = len(self._split(split)[0])
        return Local(raw, load, len(paths), total, math.ceil(total / process_count))
