"""Post-training int8 quantization: per-channel symmetric int8 weights, and (simulated) per-tensor
int8 activations at the inputs of every Conv/Dense layer, calibrated on a few batches.

Weights: ``q = round(w / s)`` clipped to [-127, 127] with ``s = max|w| / 127`` per output channel
(the last kernel axis), stored as int8 plus one float32 scale per channel -- about 4x smaller than
float32. Biases, norms and embeddings stay float32 (they are a small fraction of the weights).
Inference dequantizes (``w ~ q * s``), so the weight-only model runs anywhere.

Activations (W8A8): each Conv/Dense input is fake-quantized (quantize, then dequantize) with a
static per-tensor scale ``max|x| / 127`` measured on calibration batches; this reproduces the
numerics of int8 inference (not its speed) without changing the model code, through
``flax.linen.intercept_methods``.

A stored quantized tree is ``{'params': {... kernel: {'int8': int8, 'scale': float32} ...},
'batch_stats': ...}``; ``stored_size`` measures bytes of its msgpack serialization.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import serialization, traverse_util
from flax.core import unfreeze

from jaxvision.compression.fine_tuning import top1
from jaxvision.training.pruning import default_prunable

__all__ = [
    "calibrate_activations",
    "dequantize",
    "is_quantized_leaf",
    "quantize_params",
    "quantized_apply",
    "stored_size",
]

QMAX = 127.0
_LAYER_TYPES = (nn.Conv, nn.Dense, nn.DenseGeneral, nn.ConvTranspose)


def _quantize_kernel(w: jax.Array) -> dict[str, jax.Array]:
    w = jnp.asarray(w, jnp.float32)
    axes = tuple(range(w.ndim - 1))
    scale = jnp.max(jnp.abs(w), axis=axes) / QMAX
    scale = jnp.where(scale > 0, scale, 1.0)  # an all-zero channel (e.g. pruned) stays zero
    q = jnp.clip(jnp.round(w / scale), -QMAX, QMAX).astype(jnp.int8)
    return {"int8": q, "scale": scale.astype(jnp.float32)}


def is_quantized_leaf(x: Any) -> bool:
    return isinstance(x, dict) and set(x) == {"int8", "scale"}


def quantize_params(params, *, quantizable: Callable = default_prunable):
    """float params -> tree where every quantizable kernel is ``{'int8', 'scale'}``."""
    flat = traverse_util.flatten_dict(unfreeze(params))
    out = {}
    for path, leaf in flat.items():
        out[path] = _quantize_kernel(leaf) if quantizable(tuple(map(str, path)), leaf) else leaf
    tree = traverse_util.unflatten_dict(out)
    return tree


def dequantize(qparams):
    """Inverse of ``quantize_params`` (float32 weights ``q * scale``)."""

    def walk(node):
        if is_quantized_leaf(node):
            return node["int8"].astype(jnp.float32) * node["scale"]
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        return node

    return walk(unfreeze(qparams))


def stored_size(tree) -> int:
    """Bytes of the tree serialized with msgpack (flax.serialization), i.e. as stored on disk."""
    return len(
        serialization.msgpack_serialize(jax.tree.map(lambda x: jax.device_get(x), unfreeze(tree)))
    )


def _path(module: nn.Module) -> str:
    return "/".join(str(p) for p in module.path)


def calibrate_activations(
    model: nn.Module, variables: Any, batches: Iterable[Any], *, num_batches: int = 4
) -> dict[str, float]:
    """max |input| of every Conv/Dense call over ``num_batches`` batches (images normalized),
    keyed by module path."""

    def ranges(x):
        seen = {}

        def grab(next_fun, args, kwargs, context):
            if context.method_name == "__call__" and isinstance(context.module, _LAYER_TYPES):
                name = _path(context.module)
                m = jnp.max(jnp.abs(args[0])).astype(jnp.float32)
                seen[name] = jnp.maximum(seen.get(name, 0.0), m)
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(grab):
            model.apply(variables, x, train=False)
        return seen

    ranges = jax.jit(ranges)
    out: dict[str, float] = {}
    for i, batch in enumerate(batches):
        if i >= num_batches:
            break
        images = batch["image"] if isinstance(batch, dict) else batch
        for k, v in ranges(jnp.asarray(images)).items():
            out[k] = max(out.get(k, 0.0), float(v))
    if not out:
        raise ValueError("calibration saw no Conv/Dense layer call (or no batch)")
    return out


def _fake_quant(x, absmax):
    scale = jnp.maximum(absmax, 1e-12) / QMAX
    return (jnp.clip(jnp.round(x / scale), -QMAX, QMAX) * scale).astype(x.dtype)


def quantized_apply(
    model: nn.Module,
    qvariables: Any,
    images: jax.Array,
    *,
    activation_ranges: dict[str, float] | None = None,
) -> jax.Array:
    """Logits of the quantized model: int8 weights (dequantized) and, when ``activation_ranges``
    (from ``calibrate_activations``) is given, int8 fake-quantized Conv/Dense inputs."""
    variables = dict(unfreeze(qvariables))
    variables["params"] = dequantize(variables["params"])
    if activation_ranges is None:
        return model.apply(variables, images, train=False)

    def quant_inputs(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and isinstance(context.module, _LAYER_TYPES):
            name = _path(context.module)
            if name in activation_ranges:
                args = (_fake_quant(args[0], activation_ranges[name]), *args[1:])
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(quant_inputs):
        return model.apply(variables, images, train=False)


def quantize_run(
    model,
    variables: dict[str, Any],
    eval_batches: Iterable[dict[str, Any]] | None = None,
    *,
    calibration_batches: Iterable[dict[str, Any]] | None = None,
    num_calibration_batches: int = 4,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Post-training int8 quantization with a before/after report.

    Returns (quantized variables {'params' (int8 kernels + scales), 'batch_stats'}, report with
    'size_bytes_before/after', 'compression', 'top1_before', 'top1_int8_weights' and, when
    ``calibration_batches`` are given, 'top1_int8_weights_activations' and 'activation_ranges').
    """
    qvars = {
        "params": quantize_params(variables["params"]),
        "batch_stats": variables.get("batch_stats") or {},
    }
    report: dict[str, Any] = {
        "size_bytes_before": stored_size(variables),
        "size_bytes_after": stored_size(qvars),
    }
    report["compression"] = report["size_bytes_before"] / report["size_bytes_after"]
    ranges = None
    if calibration_batches is not None:
        ranges = calibrate_activations(
            model, variables, calibration_batches, num_batches=num_calibration_batches
        )
        report["activation_ranges"] = ranges
    if eval_batches is not None:
        report["top1_before"] = top1(lambda x: model.apply(variables, x, train=False), eval_batches)
        report["top1_int8_weights"] = top1(lambda x: quantized_apply(model, qvars, x), eval_batches)
        if ranges is not None:
            report["top1_int8_weights_activations"] = top1(
                lambda x: quantized_apply(model, qvars, x, activation_ranges=ranges), eval_batches
            )
    return qvars, report
