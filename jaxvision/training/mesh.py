"""The device mesh of a run: named axes ``('data', 'fsdp', 'model')`` sized by ``config.mesh``.

* ``data``: pure data parallelism (each device along it holds the whole state it is given).
* ``fsdp``: the batch is split over it too, and parameters, gradients and optimizer state are
  sharded over it (ZeRO-3 / fully sharded data parallelism; big_vision's 'fsdp' strategy).
* ``model``: tensor parallelism of the widest layers (attention heads, MLP hidden units); the batch
  is replicated along it.

Batches are split over ``('data', 'fsdp')``; see jaxvision.training.sharding for the parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

AXES = ("data", "fsdp", "model")
BATCH_AXES = ("data", "fsdp")  # the axes a batch's first dimension is split over


class MeshError(ValueError):
    """``config.mesh`` does not fit the devices or the batch."""


def resolve(sizes: Mapping[str, int], num_devices: int) -> dict[str, int]:
    """Axis sizes with the one ``-1`` replaced by the devices left over.

    sizes: {'data': int, 'fsdp': int, 'model': int}; each >= 1 or -1 (at most one -1).
    Returns {'data', 'fsdp', 'model'} -> int, whose product is ``num_devices``.
    Raises MeshError (a one-line message naming the keys) when that is impossible.
    """
    unknown = sorted(set(sizes) - set(AXES))
    if unknown:
        raise MeshError(f"config.mesh has unknown axes {unknown}; its axes are {', '.join(AXES)}.")
    wanted = {a: int(sizes.get(a, 1)) for a in AXES}
    bad = [a for a, n in wanted.items() if n == 0 or n < -1]
    if bad:
        raise MeshError(f"config.mesh.{bad[0]}={wanted[bad[0]]} is not valid; give a size >= 1, "
                        "or -1 for the rest of the devices.")
    free = [a for a, n in wanted.items() if n == -1]
    if len(free) > 1:
        raise MeshError(f"config.mesh: only one axis may be -1 (got {', '.join(free)}); give the "
                        "others explicit sizes.")
    fixed = int(np.prod([n for n in wanted.values() if n != -1]))
    if free:
        if num_devices % fixed:
            raise MeshError(f"config.mesh: {_spell(wanted)} needs a multiple of {fixed} devices, "
                            f"but there are {num_devices}; choose sizes whose product divides "
                            f"{num_devices}.")
        wanted[free[0]] = num_devices // fixed
    elif fixed != num_devices:
        raise MeshError(f"config.mesh: {_spell(wanted)} uses {fixed} devices, but there are "
                        f"{num_devices}; make the product {num_devices} (or set one axis to -1).")
    return wanted


def _spell(sizes: Mapping[str, int]) -> str:
    return " x ".join(f"{a}={n}" for a, n in sizes.items())


def check_batch(batch_size: int, sizes: Mapping[str, int], key: str = "batch_size",
                num_processes: int = 1) -> None:
    """Raise MeshError when ``batch_size`` does not split over the batch axes (data x fsdp)."""
    shards = int(np.prod([sizes[a] for a in BATCH_AXES]))
    if batch_size % shards == 0:
        return
    lo = (batch_size // shards) * shards or shards
    what = (f"the {shards} devices ({num_processes} process(es))" if sizes["model"] == 1 else
            f"mesh data x fsdp = {shards} batch shards")
    raise MeshError(f"config.{key}={batch_size} is not divisible by {what}; each shard needs an "
                    f"equal share. Use --config.{key}={lo} or {lo + shards}.")


def make(sizes: Mapping[str, int], devices: Sequence | None = None) -> Mesh:
    """A Mesh with axes ``AXES`` of the given (resolved) sizes.

    devices: None = every device of every process (``jax.make_mesh`` orders them so that each
    process's devices form contiguous blocks, as ``make_array_from_process_local_data`` needs,
    and follows the physical topology on TPU/GPU); a list = exactly these, in this order (tests).
    """
    shape = tuple(int(sizes[a]) for a in AXES)
    # Auto axes: shardings are given at the jit boundary and XLA propagates them inside (the
    # models carry no sharding annotations); jax.make_mesh's own default is Explicit.
    auto = (AxisType.Auto,) * len(AXES)
    if devices is None:
        return jax.make_mesh(shape, AXES, axis_types=auto, devices=jax.devices())
    return Mesh(np.asarray(list(devices), dtype=object).reshape(shape), AXES, axis_types=auto)
