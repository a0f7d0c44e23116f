"""Small datasets held in device memory: shuffled and augmented on the device.

A dataset small enough to keep on every device (MNIST-sized: 4,000 x 32x32x1 float32 = 16 MiB) is
read once through the evaluation pipeline (the same file -> pixels path and the same resize and
normalization as everywhere else), put on the devices, and every training batch is then gathered
and augmented inside the compiled step: no tf.data, no host -> device copy, no Python per step.
With ``jaxvision.training.multi_step`` a whole chunk of steps runs in one dispatch.

The training stream is the same shape as the random-access tf.data stream (jaxvision.data.pipeline):
epoch e is a permutation of the N examples seeded by (seed, e), the epochs are concatenated, global
batch t is stream positions [t*B, (t+1)*B), and the augmentation of position g is seeded by
(seed, g). Batch t is a pure function of (seed, t): resuming at step k reproduces the run exactly.
The random numbers are JAX's, not TensorFlow's, so the batches are not those of the tf.data path.

Augmentations done on the device: 'random_pad' crops (zero padding in pixel units, as
``data.augment.random_pad_crop``), plain 'resize', horizontal flips. Any other augmentation,
balanced sampling, several processes or the pmap path keep the tf.data pipeline (``device_data``
'auto') or are refused ('on').
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

MODES = ("auto", "on", "off")
# Held replicated on every device: keep it a small fraction of any accelerator's memory.
MAX_BYTES = 1 << 30
_ORDER_SALT, _AUGMENT_SALT = 0x5EED0, 0x5EED1
ORDER_CHUNK = 16  # epochs drawn together by epoch_orders (bounds the sort's temporaries)


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """What the device applies to each training example (all in normalized units).

    pad: pixels of zero padding before the random crop (0 = no crop).
    flip: random horizontal flip with probability 0.5.
    fill: (C,) float32, the normalized value of a black pixel, (0 - mean) / std.
    """

    pad: int
    flip: bool
    fill: tuple


@dataclasses.dataclass(frozen=True)
class DeviceSplit:
    """A split on the devices: image float32 (N, H, W, C), label int32 (N,), mask bool (N,).

    For evaluation N is padded (mask False) to a multiple of the batch; ``info`` is the
    pipeline's PipelineInfo.
    """

    image: jax.Array
    label: jax.Array
    mask: jax.Array
    info: object

    @property
    def arrays(self) -> dict:
        return {"image": self.image, "label": self.label, "mask": self.mask}


def unsupported_reason(config, resolved, num_processes: int, native_shape=None) -> str | None:
    """Why ``config`` cannot train from device memory (None when it can).

    ``native_shape``: the dataset's own (H, W, C) (None entries where it varies).
    """
    d = config.data
    if config.parallel != "jit":
        return f"parallel={config.parallel!r} (the device path runs under jit)"
    mesh = config.get("mesh", {}) or {}
    if mesh.get("fsdp", 1) != 1 or mesh.get("model", 1) != 1 or config.get("sharding_rules"):
        return "config.mesh/sharding_rules shard the state (the device path keeps it replicated)"
    if num_processes != 1:
        return f"{num_processes} processes (each would need the whole dataset)"
    if resolved.train_crop not in ("random_pad", "resize"):
        return f"train_crop={resolved.train_crop!r} (only 'random_pad' and 'resize' run on device)"
    h, w = (native_shape or (None, None))[:2]
    if float(resolved.eval_crop_fraction) != 1.0 or h is None or h != w:
        # The stored images are the evaluation transform's (resize + center crop), equal to the
        # training resize only for square images of one size and a crop fraction of 1.
        return "images not all square of one size, or eval_crop_fraction != 1"
    for key in ("rotation", "color_jitter", "hue_jitter", "randaugment_n"):
        if d.get(key, 0):
            return f"data.{key}={d[key]} (not implemented on device)"
    if d.get("balanced_sampling", False):
        return "data.balanced_sampling (not implemented on device)"
    return None


def choose(config, resolved, num_examples: int, num_processes: int, native_shape=None) -> bool:
    """Whether to train from device memory, per ``config.device_data`` ('auto'|'on'|'off').

    Raises ValueError for 'on' when the recipe cannot, or for an unknown mode.
    """
    mode = config.get("device_data", "off")
    if mode not in MODES:
        raise ValueError(f"config.device_data={mode!r} is not valid; use one of {', '.join(MODES)}.")
    if mode == "off":
        return False
    reason = unsupported_reason(config, resolved, num_processes, native_shape)
    size = num_examples * int(np.prod(_image_shape(resolved))) * 4
    if reason is None and size > MAX_BYTES:
        reason = f"the split needs {size / 2**20:.0f} MiB (limit {MAX_BYTES >> 20} MiB)"
    if reason is not None and mode == "on":
        raise ValueError(f"config.device_data='on' cannot be used: {reason}. Use "
                         "--config.device_data=auto (falls back to tf.data) or off.")
    return reason is None


def augmentation(config, resolved) -> Augmentation:
    """The device augmentation of ``config.data`` (see :func:`unsupported_reason`)."""
    pad = int(resolved.pad_pixels or 0) if resolved.train_crop == "random_pad" else 0
    c = int(resolved.channels)
    mean = np.broadcast_to(np.asarray(resolved.mean or (0.0,), np.float32), (c,))
    std = np.broadcast_to(np.asarray(resolved.std or (1.0,), np.float32), (c,))
    return Augmentation(pad=pad, flip=bool(config.data.flip), fill=tuple((-mean / std).tolist()))


def load_split(build_data, config_data, split: str, *, batch_size: int, seed: int,
               train: bool, sharding) -> DeviceSplit:
    """Reads ``split`` once through the evaluation pipeline and puts it on the devices.

    train=True keeps only the real examples (N = the split's size); train=False keeps the
    pipeline's padding (mask False), so N is a multiple of ``batch_size``. Raises ValueError
    when the pipeline yields another number of examples than its info states.
    """
    from jaxvision.data import eval_arrays

    # A bundled split is read as NumPy arrays (the pipeline's model inputs, no TensorFlow).
    pipe = eval_arrays.build(config_data, split, global_batch_size=batch_size)
    if pipe is None:
        pipe = build_data(config_data, split, global_batch_size=batch_size, train=False,
                          seed=seed)
    batches = list(pipe)
    image = np.concatenate([b["image"] for b in batches]).astype(np.float32, copy=False)
    label = np.concatenate([b["label"] for b in batches]).astype(np.int32, copy=False)
    mask = np.concatenate([np.asarray(b["mask"], bool) for b in batches])
    if int(mask.sum()) != pipe.info.num_examples:
        raise ValueError(f"split {split!r}: the pipeline gave {int(mask.sum())} examples, its "
                         f"info says {pipe.info.num_examples}")
    if train:
        image, label, mask = image[mask], label[mask], mask[mask]
    put = jax.device_put
    return DeviceSplit(put(image, sharding), put(label, sharding), put(mask, sharding), pipe.info)


def epoch_orders(*, num_examples: int, num_epochs: int, seed: int) -> jax.Array:
    """int32 (num_epochs, N): row e is the order in which epoch e visits the N examples, the
    permutation seeded by (seed, e) that :func:`stream_indices` draws.

    Drawn once per run and passed to the step as data: drawing two permutations of N in every
    step (an XLA sort of N keys, twice) cost 2.7 ms of the default job's ~13 ms step on the
    2-core CPU. The table takes 4 * N bytes per epoch (CIFAR-10, 200 epochs: 40 MB); it is drawn
    :data:`ORDER_CHUNK` epochs at a time, so the sort's temporaries stay those of a few epochs
    (about 25 ms per epoch of 50,000 examples on that CPU).
    """
    key = jax.random.fold_in(jax.random.key(seed), _ORDER_SALT)
    draw = jax.jit(lambda epochs: jax.lax.map(
        lambda e: jax.random.permutation(jax.random.fold_in(key, e), num_examples),
        epochs, batch_size=ORDER_CHUNK))
    return draw(jnp.arange(num_epochs, dtype=jnp.int32)).astype(jnp.int32)


def epochs_spanned(total_steps: int, *, batch_size: int, num_examples: int) -> int:
    """Epochs the first ``total_steps`` batches touch (the last batch may reach into the next)."""
    return (max(int(total_steps), 1) * batch_size - 1) // num_examples + 2


def stream_indices(step, *, batch_size: int, num_examples: int, seed: int, orders=None):
    """Example indices (B,) int32 and stream positions (B,) of global batch ``step``.

    Position g = step * B + i falls in epoch g // N at place g % N of that epoch's permutation
    (seeded by (seed, epoch)); a batch spans at most two epochs when B <= N. ``orders``: the
    permutations as a table (:func:`epoch_orders`, enough rows for ``step``), looked up instead
    of drawn.
    """
    n = num_examples
    g = jnp.asarray(step, jnp.int32) * batch_size + jnp.arange(batch_size, dtype=jnp.int32)
    epoch = g // n
    first = epoch[0]
    if orders is not None:
        perm_a, perm_b = orders[first], orders[first + 1]
    else:
        key = jax.random.fold_in(jax.random.key(seed), _ORDER_SALT)
        perm_a = jax.random.permutation(jax.random.fold_in(key, first), n)
        perm_b = jax.random.permutation(jax.random.fold_in(key, first + 1), n)
    idx = jnp.where(epoch == first, perm_a[g % n], perm_b[g % n])
    return idx.astype(jnp.int32), g


def augment_example(key, image, aug: Augmentation):
    """One image (H, W, C) float32 -> its random crop / flip, the shape unchanged."""
    k_crop, k_flip = jax.random.split(key)
    if aug.pad:
        fill = jnp.asarray(aug.fill, image.dtype)
        p = aug.pad
        padded = jnp.pad(image - fill, ((p, p), (p, p), (0, 0))) + fill
        offset = jax.random.randint(k_crop, (2,), 0, 2 * p + 1)
        image = jax.lax.dynamic_slice(padded, (offset[0], offset[1], 0), image.shape)
    if aug.flip:
        image = jnp.where(jax.random.bernoulli(k_flip), image[:, ::-1], image)
    return image


def make_batch_fn(aug: Augmentation, *, batch_size: int, num_examples: int, seed: int):
    """Returns ``batch_fn(arrays, step) -> {'image' (B, H, W, C), 'label' (B,)}``: global batch
    ``step`` of the device stream, augmented (jit-able; ``arrays`` from ``DeviceSplit.arrays``,
    with the epochs' orders under 'order' (:func:`epoch_orders`) or without, drawn per step).

    Raises ValueError when ``batch_size > num_examples``: a batch would span more than the two
    epochs :func:`stream_indices` reads (``train`` refuses such a recipe before this)."""
    if batch_size > num_examples:
        raise ValueError(f"batch_size {batch_size} is larger than the {num_examples} examples of "
                         "the split: a batch would repeat examples within one step")

    def batch_fn(arrays, step):
        idx, positions = stream_indices(step, batch_size=batch_size, num_examples=num_examples,
                                        seed=seed, orders=arrays.get("order"))
        base = jax.random.fold_in(jax.random.key(seed), _AUGMENT_SALT)
        keys = jax.vmap(lambda g: jax.random.fold_in(base, g))(positions)
        images = jax.vmap(lambda k, x: augment_example(k, x, aug))(keys, arrays["image"][idx])
        return {"image": images, "label": arrays["label"][idx]}

    return batch_fn


def _image_shape(resolved) -> tuple:
    return (int(resolved.image_size), int(resolved.image_size), int(resolved.channels))


class DeviceTraining:
    """The device path of the training loop: the train split (and the evaluation splits, once
    read) on the devices, chunks of steps per dispatch.

    Built by :func:`maybe_create`; ``train.info`` replaces the tf.data pipeline's info.
    """

    def __init__(self, config, dp, build_data, train: DeviceSplit, aug: Augmentation,
                 eval_batch: int):
        self.config, self.dp, self.build_data = config, dp, build_data
        self.train, self.aug, self.eval_batch = train, aug, eval_batch
        self._splits: dict[str, DeviceSplit] = {}
        self._train_arrays: dict | None = None
        self._run = None
        self._evaluate = None

    def compile(self, train_step, eval_step=None, merge=None) -> None:
        """Wraps the unjitted ``train_step`` (and ``eval_step``/``merge``) for chunks."""
        from jaxvision.training import multi_step

        c = self.config
        batch_fn = make_batch_fn(self.aug, batch_size=c.batch_size,
                                 num_examples=self.train.info.num_examples, seed=c.seed)
        shard = {"replicated": self.dp.replicated, "data_sharding": self.dp.data_sharding}
        self._run = multi_step.make_multi_step(train_step, batch_fn, **shard)
        if eval_step is not None:
            self._evaluate = multi_step.make_multi_eval(eval_step, merge,
                                                        batch_size=self.eval_batch, **shard)

    def chunk_length(self, step: int, total_steps: int, *, evaluating: bool) -> int:
        """Steps of the next dispatch: up to ``steps_per_dispatch``, ending exactly on the next
        logging / evaluation / checkpoint step or the last step."""
        c = self.config
        periods = [c.log_every_steps, c.checkpoint_every_steps]
        if evaluating:
            periods.append(c.eval_every_steps)
        stop = min([total_steps] + [(step // p + 1) * p for p in periods if p])
        return max(1, min(int(c.get("steps_per_dispatch", 1)), stop - step))

    def set_total_steps(self, total_steps: int) -> None:
        """Draws the order of every epoch the run's ``total_steps`` batches visit, once."""
        c, n = self.config, self.train.info.num_examples
        epochs = epochs_spanned(total_steps, batch_size=c.batch_size, num_examples=n)
        orders = epoch_orders(num_examples=n, num_epochs=epochs, seed=c.seed)
        self._train_arrays = {**self.train.arrays,
                              "order": jax.device_put(orders, self.dp.replicated)}

    def run(self, state, num_steps: int):
        """``num_steps`` training steps in one dispatch -> (state, metrics (num_steps,) each)."""
        return self._run(state, self._train_arrays or self.train.arrays, num_steps)

    def evaluate(self, state, split: str):
        """Metric sums of ``split`` (read onto the devices on first use, then kept)."""
        if split not in self._splits:
            self._splits[split] = load_split(
                self.build_data, self.config.data, split, batch_size=self.eval_batch,
                seed=self.config.seed, train=False, sharding=self.dp.replicated)
        return self._evaluate(state, self._splits[split].arrays)


def maybe_create(config, dp, build_data, train_split: str, eval_batch: int):
    """A :class:`DeviceTraining` when ``config.device_data`` and the recipe allow it, else None.

    Raises ValueError when ``device_data='on'`` and the recipe cannot run on the device.
    """
    mode = config.get("device_data", "off")
    if mode == "off":
        return None
    if dp.num_devices > 1 and (mode == "auto" or jax.default_backend() == "cpu"):
        # Sharded chunks over several XLA:CPU devices deadlocked its in-process all-reduce
        # (8 simulated devices: 5 of 8 threads reached the rendezvous, then XLA aborted); 'auto'
        # keeps the device path to one device, where it was measured.
        if mode == "on":
            raise ValueError("config.device_data='on' cannot be used with several CPU devices "
                             f"({dp.num_devices}); use --config.device_data=auto or off.")
        return None
    from jaxvision import data

    meta = data.dataset_meta(config.data)
    resolved = data.preprocess.resolve(config.data, meta)
    n = data.sources.get_source(config.data).num_examples(
        data.sources.resolve_split(data.sources.get_source(config.data), train_split))
    if not choose(config, resolved, n, jax.process_count(), meta.image_shape):
        return None
    train = load_split(build_data, config.data, train_split, batch_size=eval_batch,
                       seed=config.seed, train=True, sharding=dp.replicated)
    return DeviceTraining(config, dp, build_data, train, augmentation(config, resolved), eval_batch)
