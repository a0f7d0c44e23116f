"""Subprocess entry for tests/training/test_recipes.py: ``python -m jaxvision.train`` on mocked TFDS.

  python -m tests.training.mock_train --config configs/<recipe>.py --workdir W [--config.k=v ...]

Runs the CLI (``jaxvision.train.run``) inside ``tfds.testing.mock_data(num_examples=16)`` with
synchronous checkpoints (see ``mocked_tfds``) and writes what the loop handed the train step to
``W/train_step_args.json``. XLA_FLAGS (device count) is set by the caller.
"""

import contextlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
MOCK_EXAMPLES = 16
SEEN_FILE = "train_step_args.json"


@contextlib.contextmanager
def mocked_tfds(num_examples: int = MOCK_EXAMPLES):
    """``tfds.testing.mock_data`` with synchronous Orbax saves.

    While a mocked builder's ``as_dataset`` runs, TFDS swaps epath / tf.io.gfile for a temporary
    file system (its MockFs); an asynchronous Orbax save running at that moment in its background
    thread would write there and fail ("No ArrayMetadata found"). Real runs are unaffected.
    Random initializers use the non-partitionable threefry, which XLA:CPU compiles about twice as
    fast (only the random draws change).
    """
    import jax
    import tensorflow_datasets as tfds

    from jaxvision.data import sources
    from jaxvision.training import checkpoints

    real_init = checkpoints.CheckpointStore.__init__

    def sync_init(self, *args, **kw):
        # Orbax's tmp-folder cleanup lists the workdir through epath, which the mock swaps.
        real_init(self, *args, **{**kw, "async_save": False, "cleanup_tmp": False})

    saved_counts = sources._counts_cache
    checkpoints.CheckpointStore.__init__ = sync_init
    sources._counts_cache = {}  # split sizes: the mocked datasets have num_examples per split
    try:
        with tfds.testing.mock_data(num_examples=num_examples), jax.threefry_partitionable(False):
            yield
    finally:
        checkpoints.CheckpointStore.__init__ = real_init
        sources._counts_cache = saved_counts


@contextlib.contextmanager
def spy_train_step(seen: dict):
    """Records the keyword arguments the loop passes to ``steps.make_train_step`` in ``seen``."""
    import jax.numpy as jnp

    from jaxvision.training import steps

    real = steps.make_train_step

    def spy(model, **kw):
        seen.update(
            dtype=jnp.dtype(model.dtype).name,
            label_smoothing=float(kw.get("label_smoothing", 0.0)),
            ema_decay=float(kw.get("ema_decay", 0.0)),
            mixup=kw.get("augment_fn") is not None,
        )
        return real(model, **kw)

    steps.make_train_step = spy
    try:
        yield
    finally:
        steps.make_train_step = real


def main():
    from jaxvision import train

    workdir = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--workdir="))
    seen = {}
    with mocked_tfds(), spy_train_step(seen):
        try:
            train.run()
        except SystemExit as e:
            if e.code not in (0, None):
                raise
    with open(os.path.join(workdir, SEEN_FILE), "w") as f:
        json.dump(seen, f)
    print("FINISHED", flush=True)


if __name__ == "__main__":
    main()
