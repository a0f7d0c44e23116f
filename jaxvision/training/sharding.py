"""Which mesh axes each array of the train state is split over (its PartitionSpec).

Rules, the first that applies wins, per array (parameters, gradients, optimizer moments, EMA and
BatchNorm statistics alike, so an optimizer moment is laid out as its parameter):

1. ``config.sharding_rules``: ``((regex, spec), ...)``; ``regex`` is searched (``re.search``) in
   the array's path, e.g. ``params/encoder/block_0/mlp/fc1/kernel`` (optimizer moments carry a
   prefix such as ``opt_state/0/mu/``, so a regex written for a parameter also places its
   moments); ``spec`` gives one entry per leading dimension: None, an axis name or a tuple of
   axis names (``()`` or None = replicated). big_vision's ``sharding_rules`` work the same way.
2. Tensor parallelism over ``model`` (Megatron-LM's column/row split, Shoeybi et al. 2019):
   attention query/key/value kernels ``(D, heads, head_dim)`` and biases ``(heads, head_dim)``
   over heads, the output projection ``(heads, head_dim, D)`` over heads, the transformer MLP's
   ``fc1`` ``(D, hidden)`` over hidden units and ``fc2`` ``(hidden, D)`` likewise, when the
   dimension divides by the axis size.
3. FSDP over ``fsdp`` (big_vision's 'fsdp' strategy): the largest dimension not already split
   that divides by the axis size, for arrays of at least :data:`FSDP_MIN_SIZE` elements (smaller
   ones are replicated: their memory is negligible and gathering them costs latency).

Everything else is replicated. Model code never names devices.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvision.layers import transformer
from jaxvision.training.mesh import AXES

FSDP_MIN_SIZE = 4000  # elements; big_vision's `fsdp` rule default (min_size_fsdp)

# (path regex, ndim, dimension over 'model'); see rule 2 of the module docstring.
MODEL_RULES = (
    (re.compile(r"(query|key|value)/kernel$"), 3, 1),
    (re.compile(r"(query|key|value)/bias$"), 2, 0),
    (re.compile(r"out/kernel$"), 3, 0),
    (re.compile(r"mlp/fc1/kernel$"), 2, 1),
    (re.compile(r"mlp/fc1/bias$"), 1, 0),
    (re.compile(r"mlp/fc2/kernel$"), 2, 0),
)
# Layers stacked by ``scan_layers=True`` (jaxvision.layers.transformer's scan) carry a leading
# layer axis: the same rules apply one dimension further right.
SCANNED = re.compile(rf"(^|/){transformer.SCANNED_NAME}/")


class ShardingRuleError(ValueError):
    """A ``config.sharding_rules`` entry is malformed or does not fit an array."""


def parse_rules(rules) -> tuple:
    """``config.sharding_rules`` -> ((compiled regex, spec tuple), ...); ShardingRuleError."""
    parsed = []
    for i, rule in enumerate(rules or ()):
        where = f"config.sharding_rules[{i}]={rule!r}"
        if not isinstance(rule, Sequence) or isinstance(rule, str) or len(rule) != 2:
            raise ShardingRuleError(f"{where} is not a (regex, spec) pair; e.g. "
                                    "('mlp/fc1/kernel', (None, 'model')).")
        regex, spec = rule
        try:
            pattern = re.compile(str(regex))
        except re.error as e:
            raise ShardingRuleError(f"{where}: bad regex ({e}).") from None
        spec = () if spec is None else (spec,) if isinstance(spec, str) else tuple(spec)
        for entry in spec:
            names = entry if isinstance(entry, Sequence) and not isinstance(entry, str) else (entry,)
            for name in names:
                if name is not None and name not in AXES:
                    raise ShardingRuleError(f"{where}: unknown mesh axis {name!r}; use None or "
                                            f"one of {', '.join(AXES)}.")
        parsed.append((pattern, spec))
    return tuple(parsed)


def spec_for(path: str, shape: Sequence[int], sizes: Mapping[str, int], rules=(),
             min_size: int = FSDP_MIN_SIZE) -> P:
    """The PartitionSpec of one array.

    path: '/'-joined keys of the array in its tree; shape: its shape; sizes: resolved mesh axis
    sizes; rules: :func:`parse_rules` output. Raises ShardingRuleError when a matching user rule
    does not fit ``shape``.
    """
    shape = tuple(int(d) for d in shape)
    for pattern, spec in rules:
        if pattern.search(path):
            return _checked_user_spec(path, shape, spec, sizes)
    spec = [None] * len(shape)
    if sizes.get("model", 1) > 1:
        _place_model(path, shape, sizes["model"], spec)
    if sizes.get("fsdp", 1) > 1 and int(np.prod(shape, dtype=np.int64)) >= min_size:
        _place_fsdp(shape, sizes["fsdp"], spec)
    return P(*spec)


def _place_model(path: str, shape, n: int, spec: list) -> None:
    offset = 1 if SCANNED.search(path) else 0
    for pattern, ndim, dim in MODEL_RULES:
        dim += offset
        if len(shape) == ndim + offset and pattern.search(path) and shape[dim] % n == 0:
            spec[dim] = "model"
            return


def _place_fsdp(shape, n: int, spec: list) -> None:
    # Largest dimension first; ties keep the earlier dimension (a stable sort).
    for i in sorted(range(len(shape)), key=lambda i: -shape[i]):
        if spec[i] is None and shape[i] % n == 0:
            spec[i] = "fsdp"
            return


def _checked_user_spec(path: str, shape, spec: tuple, sizes) -> P:
    if len(spec) > len(shape):
        raise ShardingRuleError(f"config.sharding_rules: spec {spec} has {len(spec)} entries but "
                                f"{path} has shape {shape}; give at most {len(shape)}.")
    used = []
    for d, entry in enumerate(spec):
        names = entry if isinstance(entry, tuple | list) else (entry,)
        names = tuple(n for n in names if n is not None)
        used += names
        n = int(np.prod([sizes[a] for a in names])) if names else 1
        if shape[d] % n:
            raise ShardingRuleError(
                f"config.sharding_rules: {path} dimension {d} of size {shape[d]} does not split "
                f"over {'x'.join(names)} = {n} devices; choose another axis or dimension.")
    if len(set(used)) != len(used):
        raise ShardingRuleError(f"config.sharding_rules: spec {spec} for {path} uses a mesh axis "
                                "twice.")
    return P(*(tuple(e) if isinstance(e, list) else e for e in spec))


def path_string(key_path) -> str:
    """'/'-joined names of a ``jax.tree_util`` key path (dict keys, attributes, indices)."""
    parts = []
    for k in key_path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def tree_specs(tree, sizes: Mapping[str, int], rules=(), min_size: int = FSDP_MIN_SIZE):
    """A tree like ``tree`` (arrays or ShapeDtypeStructs) of PartitionSpecs."""
    return jax.tree_util.tree_map_with_path(
        lambda kp, x: spec_for(path_string(kp), np.shape(x), sizes, rules, min_size), tree)


def tree_shardings(tree, mesh: Mesh, rules=(), min_size: int = FSDP_MIN_SIZE):
    """A tree like ``tree`` of NamedShardings on ``mesh`` (by :func:`tree_specs`)."""
    sizes = dict(mesh.shape)
    return jax.tree.map(lambda s: NamedSharding(mesh, s),
                        tree_specs(tree, sizes, rules, min_size),
                        is_leaf=lambda x: isinstance(x, P))


def bytes_per_device(tree, shardings) -> int:
    """Bytes one device holds of ``tree`` laid out by ``shardings`` (the largest shard of each
    array; arrays or ShapeDtypeStructs)."""
    total = 0
    for x, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings), strict=True):
        shard = s.shard_shape(tuple(np.shape(x)))
        total += int(np.prod(shard, dtype=np.int64)) * np.dtype(x.dtype).itemsize
    return total


def host_copy(x) -> np.ndarray:
    """numpy value of a whole array on this process: the first local copy of a replicated
    jax.Array; an array split over devices is assembled (over several processes by an all-gather,
    a collective that every process must call); numpy arrays and scalars as they are."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
