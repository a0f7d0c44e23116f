"""Default data configuration: every key of `config.data`, with its meaning."""

import ml_collections
from ml_collections import config_dict

CACHE_MODES = ("auto", "memory", "none")


def check_cache(config_data) -> None:
    """Raises ValueError naming the choices when ``config_data.cache`` is not one of them."""
    if config_data.cache not in CACHE_MODES:
        raise ValueError(f"config.data.cache={config_data.cache!r}; choose 'auto', 'memory' or "
                         "'none'")


def default_config() -> ml_collections.ConfigDict:
    """Returns the data ConfigDict with every key and its default.

    `None` means "decided from the dataset" (see each key). Such keys are typed placeholders
    (`config_dict.placeholder`), so the command line can set them like any other key
    (`--config.data.data_dir=/x`, `--config.data.image_size=64`, `--config.data.mean='(0.5,)'`).

    Source
      name: TFDS dataset name ('cifar10', 'imagenet2012', ...), a bundled dataset ('mnist5k',
        'digits', 'lfw_faces') or 'image_folder' (then `path` is the folder).
      path: root of an image folder, `root/<class>/*` or `root/<split>/<class>/*`.
      data_dir: where TFDS datasets live and bundled ones are built; None -> $TFDS_DATA_DIR or
        ~/tensorflow_datasets.
      download: let TFDS download and prepare a dataset that is not yet in data_dir.
      train_split / eval_split / test_split: split strings, TFDS slicing allowed ('train[:90%]').
        'auto' for eval_split -> 'validation' if the dataset has it, else 'test'; 'auto' for
        test_split -> 'test' if it exists, else the eval split.
      val_fraction / test_fraction / split_seed: stratified split of an image folder that has
        no split sub-folders (per class, shuffled with split_seed; the rest is 'train').
      skip_corrupt: skip unreadable files of an image folder (counted and reported) instead of
        stopping with an error that names them.

    Image fed to the model
      image_size: square side in pixels; None -> the dataset's own size when all its images have
        one (cifar10 32, mnist5k 28, digits 8, lfw_faces 25), else 224.
      channels: 1 or 3 (gray <-> RGB conversion for the model); None -> the dataset's channels.
      mean / std: per-channel normalization in [0, 1] units, image = (x/255 - mean) / std.
        None -> known constants of the dataset (cifar10/100, mnist, imagenet; ImageNet's for image
        folders and unknown datasets); 'none' -> no normalization (images in [0, 1]).
      alpha_background: colour under transparent pixels (alpha, palette or colour-key
        transparency), composited as a viewer shows the image: a PIL colour name, '#rrggbb',
        'rgb(r, g, b)' or an (r, g, b) tuple; default 'white' (browsers and image viewers on a
        light page). Every file is read by `jaxvision.data.image_file` (EXIF orientation, ICC
        -> sRGB, 16-bit, first frame of animations; see its docstring).

    Training augmentation (all random draws are stateless, seeded by (seed, position in stream))
      train_crop: 'inception' (random resized crop), 'random_pad' (pad by pad_pixels, random crop,
        CIFAR style), 'center' (as eval), 'resize' (plain resize) or 'auto' (inception when the
        dataset's images have no fixed size, else random_pad).
      crop_area_min / crop_aspect_min / crop_aspect_max: inception crop ranges (area fraction
        [crop_area_min, 1], aspect ratio [min, max]).
      pad_pixels: padding of 'random_pad'; None -> image_size // 8.
      flip: random horizontal flip with probability 0.5.
      rotation: maximum rotation in degrees (uniform in [-rotation, rotation]); 0 = off.
      color_jitter: brightness/contrast/saturation strength s, factors uniform in [1-s, 1+s]
        (torchvision ColorJitter semantics); 0 = off.
      hue_jitter: hue shift uniform in [-h, h] (fraction of the colour circle, <= 0.5); 0 = off.
      randaugment_n / randaugment_m: RandAugment layers and magnitude (0..10 scale); n=0 = off.
      mixup_alpha / cutmix_alpha / mixup_switch_prob: batch mixing on device, applied by the
        train step with `data.augment.mixup_cutmix` (0 = off; with both on, cutmix is chosen with
        probability mixup_switch_prob).
      random_erasing_prob / random_erasing_mode: random erasing (Zhong et al. 2020) as timm's
        RandomErasing, on device in the train step before mixing (`data.augment.random_erasing`):
        each image, with this probability (0 = off; the DeiT/ConvNeXt/Swin recipes use 0.25), gets
        one box of 2%-1/3 of its area, aspect ratio log-uniform in [0.3, 1/0.3], replaced after
        mean/std normalization (so in normalized units) by 'pixel' N(0, 1) noise per pixel and
        channel (timm's `--remode pixel`, the recipes' choice), 'rand' one N(0, 1) colour per
        channel or 'const' 0 (the mean). With mean 'none' the values are in [0, 1] pixel units.

    Evaluation preprocessing
      eval_crop_fraction: resize the shorter side to image_size / fraction, then center crop;
        None -> 0.875 when the dataset's images have no fixed size, else 1.0 (plain resize).

    Class imbalance
      class_weighting: 'none' | 'inverse' (n / (K n_k), sklearn 'balanced') | 'effective'
        (effective number of samples, Cui et al. 2019, weights summing to K).
      class_weight_beta: beta of 'effective'.
      balanced_sampling: draw training examples class-uniformly. Random-access sources: each
        stream position draws a class uniformly, then one of its examples uniformly (with
        replacement), seeded by (seed, position). Streaming sources: each class its own
        shuffled, repeated stream, mixed uniformly.

    Performance
      shuffle_buffer: training shuffle buffer of streaming sources (capped at the size of the
        process's shard); random-access sources shuffle each epoch fully instead.
      cache: 'auto' (keep encoded examples in memory when the dataset is under 2 GiB), 'memory'
        (always) or 'none' (stream from the TFRecord files). Decides the training order, below.

    Training order and multi-host (process-count invariance)
      Random-access sources: image folders (a list of file paths; files are read when fed) and
        TFDS / bundled datasets kept in memory (cache 'auto' under 2 GiB, or 'memory'; every
        process holds the split's encoded examples). Epoch e is a full permutation of the split
        seeded by (seed, e), the same on every process; global batch t is positions
        [t*B, (t+1)*B) of the concatenated epochs, process p feeds [t*B + p*B/P, t*B +
        (p+1)*B/P) and decodes and augments only those, with augmentation seeded by (seed,
        position). The global batches, and so training, are the same for any process count P.
      Streaming sources: TFDS datasets over 2 GiB with cache 'auto', or cache 'none'. Each
        process reads only its own shard (tfds.even_splits), shuffled with a buffer and a
        per-process seed: exact resume still holds, but the global batches depend on P.
      Evaluation, any source: each process reads its own shard, padded to the same number of
        batches on every process; every example counted exactly once overall.
    """
    c = ml_collections.ConfigDict()
    c.name = "cifar10"
    c.path = ""
    c.data_dir = config_dict.placeholder(str)
    c.download = True
    c.train_split = "train"
    c.eval_split = "auto"
    c.test_split = "auto"
    c.val_fraction = 0.1
    c.test_fraction = 0.1
    c.split_seed = 0
    c.skip_corrupt = False

    c.image_size = config_dict.placeholder(int)
    c.channels = config_dict.placeholder(int)
    # a tuple of numbers or the string 'none': any Python literal on the command line
    c.mean = config_dict.placeholder(object)
    c.std = config_dict.placeholder(object)
    c.alpha_background = "white"

    c.train_crop = "auto"
    c.crop_area_min = 0.08
    c.crop_aspect_min = 3 / 4
    c.crop_aspect_max = 4 / 3
    c.pad_pixels = config_dict.placeholder(int)
    c.flip = True
    c.rotation = 0.0
    c.color_jitter = 0.0
    c.hue_jitter = 0.0
    c.randaugment_n = 0
    c.randaugment_m = 9
    c.mixup_alpha = 0.0
    c.cutmix_alpha = 0.0
    c.mixup_switch_prob = 0.5
    c.random_erasing_prob = 0.0
    c.random_erasing_mode = "pixel"

    c.eval_crop_fraction = config_dict.placeholder(float)

    c.class_weighting = "none"
    c.class_weight_beta = 0.999
    c.balanced_sampling = False

    c.shuffle_buffer = 10_000
    c.cache = "auto"
    return c
