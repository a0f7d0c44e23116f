"""Parallel training: ``jax.jit`` over a Mesh ('data', 'fsdp', 'model' axes) or ``jax.pmap``.

Both paths run the same pure step functions (jaxvision.training.steps); this module only places
arrays and wraps the functions.

* ``parallel='jit'``: one global Mesh over every device of every process, axes sized by
  ``config.mesh`` (jaxvision.training.mesh). Each array of the train state is laid out by the
  rules of jaxvision.training.sharding: with the default mesh (data = all devices, fsdp = model =
  1) everything is replicated (``NamedSharding(mesh, P())``), as plain data parallelism; with
  ``fsdp``/``model`` > 1 parameters, gradients, optimizer state and EMA are split. The batch is
  sharded on its first axis over ('data', 'fsdp') (``NamedSharding(mesh, P(('data', 'fsdp')))``),
  built from each process's rows with ``jax.make_array_from_process_local_data``; the state is
  donated and leaves the step with the layout it came in with.
* ``parallel='pmap'``: data parallelism only. The state carries a leading axis of local devices;
  each process feeds its local devices; steps run with ``axis_name='batch'`` (gradients ``pmean``,
  BatchNorm statistics averaged by the model built with ``bn_axis_name='batch'``).

Checkpoints see global jax.Arrays (replicated, or sharded as trained); Orbax restores them onto any
mesh (jaxvision.training.loop restores with this run's target shardings), so a run can be resumed
under either path and on another mesh.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvision.training import mesh as mesh_lib
from jaxvision.training import sharding as sharding_lib

AXIS_NAME = "batch"  # pmap collective axis; the models' bn_axis_name


class DataParallel:
    """Placement and compilation for one of the two paths.

    Attributes:
      mode: 'jit' | 'pmap'.
      sizes: resolved mesh axis sizes {'data', 'fsdp', 'model'} -> int.
      mesh: global Mesh with axes ('data', 'fsdp', 'model') (used for checkpoints on both paths).
      replicated: NamedSharding(mesh, P()).
      data_sharding: NamedSharding(mesh, P(('data', 'fsdp'))): a batch's first axis.

    Args:
      mode: 'jit' | 'pmap'.
      devices: None = every device of every process; else exactly these (tests).
      mesh_sizes: {'data', 'fsdp', 'model'} sizes, -1 = the rest (default: all devices on 'data').
      rules: ``config.sharding_rules`` ((regex, spec), ...), see jaxvision.training.sharding.
      fsdp_min_size: arrays of fewer elements stay replicated over 'fsdp' (sharding.FSDP_MIN_SIZE).

    Raises mesh.MeshError / sharding.ShardingRuleError (ValueErrors, one line) for a mesh that
    does not fit the devices, a sharded mesh under pmap, or a malformed rule.
    """

    def __init__(self, mode: str = "jit", devices=None, mesh_sizes=None, rules=(),
                 fsdp_min_size: int = sharding_lib.FSDP_MIN_SIZE):
        if mode not in ("jit", "pmap"):
            raise ValueError(f"parallel={mode!r}: use 'jit' or 'pmap'.")
        self.mode = mode
        self.devices = list(devices if devices is not None else jax.devices())
        self.sizes = mesh_lib.resolve(mesh_sizes or {"data": -1}, len(self.devices))
        if mode == "pmap" and (self.sharded or rules):
            raise mesh_lib.MeshError(
                f"config.parallel='pmap' is data parallel only, but config.mesh asks for "
                f"fsdp={self.sizes['fsdp']}, model={self.sizes['model']} (sharding_rules: "
                f"{len(rules or ())}); use --config.parallel=jit to shard the state, or set "
                "fsdp=model=1 and no sharding_rules.")
        self.rules = sharding_lib.parse_rules(rules)
        self.fsdp_min_size = int(fsdp_min_size)
        self.mesh = mesh_lib.make(self.sizes, devices)
        self.replicated = NamedSharding(self.mesh, P())
        self.data_sharding = NamedSharding(self.mesh, P(mesh_lib.BATCH_AXES))

    @property
    def sharded(self) -> bool:
        """Whether the state is split over devices (mesh fsdp or model > 1)."""
        return self.sizes["fsdp"] > 1 or self.sizes["model"] > 1

    @property
    def batch_shards(self) -> int:
        """Number of pieces a batch's first axis is split into (data x fsdp)."""
        return self.sizes["data"] * self.sizes["fsdp"]

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
    def state_shardings(self, state):
        """A tree like ``state`` (arrays or ShapeDtypeStructs) of its target NamedShardings:
        replicated unless the mesh shards the state (jaxvision.training.sharding's rules)."""
        if not self.sharded and not self.rules:
            return jax.tree.map(lambda _: self.replicated, state)
        return sharding_lib.tree_shardings(state, self.mesh, self.rules, self.fsdp_min_size)

    def global_replicated(self, tree):
        """Host/per-process values (identical on every process) -> global replicated jax.Arrays."""

        def put(x):
            x = np.asarray(x)
            return jax.make_array_from_callback(x.shape, self.replicated, lambda idx: x[idx])

        return jax.tree.map(put, tree)

    def put_state(self, state):
        """A host (or checkpoint-layout) state -> the layout this path trains with."""
        if self.mode == "jit":
            return jax.tree.map(_place, state, self.state_shardings(state))
        n = len(self.local_devices)
        host = jax.tree.map(sharding_lib.host_copy, state)
        return jax.tree.map(lambda x: np.broadcast_to(x, (n, *x.shape)), host)

    def checkpoint_view(self, state):
        """The state as global arrays, replicated or sharded as trained (what checkpoints store)."""
        if self.mode == "jit":
            return state
        return self.global_replicated(jax.tree.map(lambda x: np.asarray(x[0]), state))

    def host_value(self, tree):
        """numpy copy of a tree on this process (first device's copy under pmap). Arrays split
        over several processes are gathered: every process must call it (a collective)."""
        if self.mode == "pmap":
            return jax.tree.map(lambda x: np.asarray(x[0]), tree)
        return jax.tree.map(sharding_lib.host_copy, tree)

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
    def compile_train_step(self, train_step: Callable, state=None) -> Callable:
        """``(state, batch) -> (state, metrics)``; the state is donated and keeps its layout.

        state: the train state (arrays or ShapeDtypeStructs) whose layout the step takes and
        returns; needed when the mesh shards the state (None = replicated).
        """
        if self.mode == "pmap":
            return jax.pmap(lambda s, b: train_step(s, b), axis_name=AXIS_NAME, donate_argnums=0,
                            devices=self.local_devices)
        state_sh = self._state_layout(state)
        return jax.jit(
            lambda s, b: train_step(s, b),
            in_shardings=(state_sh, self.data_sharding),
            out_shardings=(state_sh, self.replicated),
            donate_argnums=0,
        )

    def compile_eval_step(self, eval_step: Callable, state=None) -> Callable:
        """``(state, batch) -> sums`` (replicated / identical on every device); ``state`` as for
        :meth:`compile_train_step`."""
        if self.mode == "pmap":
            return jax.pmap(eval_step, axis_name=AXIS_NAME, devices=self.local_devices)
        return jax.jit(
            eval_step,
            in_shardings=(self._state_layout(state), self.data_sharding),
            out_shardings=self.replicated,
        )

    def _state_layout(self, state):
        if state is not None:
            return self.state_shardings(state)
        if self.sharded or self.rules:
            raise ValueError("a sharded mesh needs the state to compile a step: pass state=.")
        return self.replicated

    def compile_merge(self, merge: Callable) -> Callable:
        """Adds two metric-sum trees on device (no host sync)."""
        if self.mode == "pmap":
            return jax.pmap(merge, devices=self.local_devices)
        return jax.jit(merge, out_shardings=self.replicated)


def from_config(config) -> DataParallel:
    """The DataParallel of ``config`` (parallel, mesh, sharding_rules), with the batch sizes
    checked against the mesh; raises a one-line ValueError when they do not fit."""
    dp = DataParallel(config.parallel, mesh_sizes=dict(config.get("mesh", {}) or {}),
                      rules=config.get("sharding_rules", ()))
    for key in ("batch_size", "eval_batch_size"):
        if config.get(key) is not None:
            mesh_lib.check_batch(int(config[key]), dp.sizes, key, jax.process_count())
    return dp


def _place(x, sharding):
    """``x`` (host value or jax.Array) as a global array laid out by ``sharding``."""
    if isinstance(x, jax.Array) and x.sharding == sharding:
        return x
    if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sharding, x.ndim):
        # Same layout under another sharding type (e.g. SingleDeviceSharding): relabel it, or the
        # step's first call (this sharding) and later ones (its out_shardings) compile twice.
        return jax.device_put(x, sharding)
    if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
        return jax.device_put(x, sharding)  # split over processes: reshard on the devices
    x = sharding_lib.host_copy(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])
