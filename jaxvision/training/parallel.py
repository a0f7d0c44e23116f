"""Data parallelism: ``jax.jit`` over a Mesh ('data' axis) or ``jax.pmap``.

Both paths run the same pure step functions (jaxvision.training.steps); this module only places
arrays and wraps the functions.

* ``parallel='jit'``: one global Mesh over every device of every process with a single 'data' axis.
  The train state is replicated (``NamedSharding(mesh, P())``), the batch is sharded on its first
  axis (``NamedSharding(mesh, P('data'))``), built from each process's rows with
  ``jax.make_array_from_process_local_data``; the state is donated.
* ``parallel='pmap'``: the state carries a leading axis of local devices; each process feeds its
  local devices; steps run with ``axis_name='batch'`` (gradients ``pmean``, BatchNorm statistics
  averaged by the model built with ``bn_axis_name='batch'``).

Checkpoints always see the jit layout (global, replicated arrays), so a run can be resumed under
either path.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS_NAME = "batch"  # pmap collective axis; the models' bn_axis_name


class DataParallel:
    """Placement and compilation for one of the two paths.

    Attributes:
      mode: 'jit' | 'pmap'.
      mesh: global Mesh with axis 'data' (used for checkpoints on both paths).
      replicated: NamedSharding(mesh, P()).
      data_sharding: NamedSharding(mesh, P('data')).
    """

    def __init__(self, mode: str = "jit", devices=None):
        if mode not in ("jit", "pmap"):
            raise ValueError(f"parallel={mode!r}: use 'jit' or 'pmap'.")
        self.mode = mode
        self.devices = list(devices if devices is not None else jax.devices())
        self.mesh = Mesh(np.asarray(self.devices), ("data",))
        self.replicated = NamedSharding(self.mesh, P())
        self.data_sharding = NamedSharding(self.mesh, P("data"))

    @property
    def num_devices(self) -> int:
        return len(self.devices)

    @property
    def axis_name(self) -> str | None:
        """Collective axis for the step functions (None on the jit path: XLA handles it)."""
        return AXIS_NAME if self.mode == "pmap" else None

    @property
    def local_devices(self):
        return [d for d in self.devices if d.process_index == jax.process_index()]

    # ---- state -----------------------------------------------------------------------------
    def global_replicated(self, tree):
        """Host/per-process values (identical on every process) -> global replicated jax.Arrays."""

        def put(x):
            x = np.asarray(x)
            return jax.make_array_from_callback(x.shape, self.replicated, lambda idx: x[idx])

        return jax.tree.map(put, tree)

    def put_state(self, state):
        """A host (or checkpoint-layout) state -> the layout this path trains with."""
        if self.mode == "jit":
            return jax.tree.map(
                lambda x: x if _is_replicated_on(x, self.replicated) else self._put_one(x), state
            )
        n = len(self.local_devices)
        host = jax.tree.map(_local_value, state)
        return jax.tree.map(lambda x: np.broadcast_to(x, (n, *x.shape)), host)

    def _put_one(self, x):
        x = _local_value(x)
        return jax.make_array_from_callback(x.shape, self.replicated, lambda idx: x[idx])

    def checkpoint_view(self, state):
        """The state as global replicated arrays (what checkpoints store)."""
        if self.mode == "jit":
            return state
        return self.global_replicated(jax.tree.map(lambda x: np.asarray(x[0]), state))

    def host_value(self, tree):
        """numpy copy of a (replicated) tree on this process (first device's copy under pmap)."""
        if self.mode == "pmap":
            return jax.tree.map(lambda x: np.asarray(x[0]), tree)
        return jax.tree.map(_local_value, tree)

    # ---- batches ---------------------------------------------------------------------------
    def put_batch(self, local_batch: dict):
        """This process's rows {'image': (B/P, ...), ...} -> what the compiled step takes."""
        if self.mode == "jit":
            return {
                k: jax.make_array_from_process_local_data(self.data_sharding, np.asarray(v))
                for k, v in local_batch.items()
            }
        n = len(self.local_devices)

        def split(v):
            v = np.asarray(v)
            if v.shape[0] % n:
                raise ValueError(
                    f"per-process batch of {v.shape[0]} does not split over {n} local devices."
                )
            return v.reshape(n, v.shape[0] // n, *v.shape[1:])

        return {k: split(v) for k, v in local_batch.items()}

    # ---- compilation -----------------------------------------------------------------------
    def compile_train_step(self, train_step: Callable) -> Callable:
        """``(state, batch) -> (state, metrics)``; the state is donated."""
        if self.mode == "pmap":
            return jax.pmap(lambda s, b: train_step(s, b), axis_name=AXIS_NAME, donate_argnums=0,
                            devices=self.local_devices)
        return jax.jit(
            lambda s, b: train_step(s, b),
            in_shardings=(self.replicated, self.data_sharding),
            out_shardings=(self.replicated, self.replicated),
            donate_argnums=0,
        )

    def compile_eval_step(self, eval_step: Callable) -> Callable:
        """``(state, batch) -> sums`` (replicated / identical on every device)."""
        if self.mode == "pmap":
            return jax.pmap(eval_step, axis_name=AXIS_NAME, devices=self.local_devices)
        return jax.jit(
            eval_step,
            in_shardings=(self.replicated, self.data_sharding),
            out_shardings=self.replicated,
        )

    def compile_merge(self, merge: Callable) -> Callable:
        """Adds two metric-sum trees on device (no host sync)."""
        if self.mode == "pmap":
            return jax.pmap(merge, devices=self.local_devices)
        return jax.jit(merge, out_shardings=self.replicated)


def _is_replicated_on(x, sharding) -> bool:
    return isinstance(x, jax.Array) and x.sharding == sharding


def _local_value(x):
    """numpy value of a replicated array (works for arrays not fully addressable)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(x.addressable_data(0))
    return np.asarray(x)
