"""Explanations for Vision Transformers and hybrids: attention rollout (Abnar & Zuidema 2020) and
token Grad-CAM (Grad-CAM on the patch tokens entering the last encoder block).

Both read the model through ``flax.linen.intercept_methods``, so the models need no changes.
Rollout recomputes each ``MultiHeadSelfAttention``'s weights ``softmax(q k^T / sqrt(d))`` from its
input and its query/key parameters. Models built with ``scan_layers=True`` are unrolled first
(``layers.transformer.unstack_encoder_params``), since a scanned body is traced only once.
"""

from __future__ import annotations

import math
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.explain.gradcam import _calls, _name, layer_gradients, upsample
from jaxvision.layers.attention import MultiHeadSelfAttention

__all__ = ["attention_rollout", "default_token_layer", "token_grid", "token_gradcam"]

_INDEXED = re.compile(r"^[a-z][a-z_]*\d+$")  # block_3, layer7: named repeated layers


def token_grid(
    num_tokens: int, image_hw: tuple[int, int], max_prefix: int = 8
) -> tuple[int, int, int]:
    """(number of prefix tokens, grid h, grid w) for ``num_tokens`` tokens of an image ``image_hw``.

    The patch grid has the image's aspect ratio; prefix tokens (class/register tokens) come first.
    """
    h, w = image_hw
    for prefix in range(max_prefix + 1):
        n = num_tokens - prefix
        if n <= 0:
            break
        gh = round(math.sqrt(n * h / w))
        if gh > 0 and n % gh == 0 and abs(n // gh * h - gh * w) <= max(h, w) / max(gh, 1):
            return prefix, gh, n // gh
    raise ValueError(
        f"cannot arrange {num_tokens} tokens as a patch grid for an image of {image_hw}"
    )


def _unscanned(model: nn.Module, variables: Any):
    if getattr(model, "scan_layers", False):
        from jaxvision.layers.transformer import unstack_encoder_params

        return model.clone(scan_layers=False), unstack_encoder_params(dict(variables))
    return model, variables


def default_token_layer(model: nn.Module, variables: Any, images: jax.Array) -> str:
    """The input of the last encoder block, i.e. the output of the one before it (with a class
    token, patch tokens get no gradient after the last block, since the head reads only the class
    token). Blocks are found as siblings named ``<name><index>`` with (N, T, D) outputs."""
    groups: dict[str, list[str]] = {}
    for name, shape in _calls(model, variables, images):
        parent, _, leaf = name.rpartition("/")
        if len(shape) == 3 and _INDEXED.match(leaf):
            members = groups.setdefault(parent, [])
            if name not in members:
                members.append(name)
    if not groups:
        raise ValueError(
            "found no transformer blocks (siblings named like 'block_0' with (N, T, D) outputs); "
            "pass layer='path/to/module' explicitly"
        )
    # The largest group; on a tie the shallowest (encoder blocks, not norm1/norm2 inside a block).
    blocks = max(groups.items(), key=lambda kv: (len(kv[1]), -kv[0].count("/")))[1]
    return blocks[-2] if len(blocks) > 1 else blocks[-1]


def token_gradcam(
    model: nn.Module,
    variables: Any,
    images: jax.Array,
    *,
    layer: str | None = None,
    target=None,
) -> tuple[jax.Array, jax.Array, str]:
    """Grad-CAM on the patch tokens of a transformer layer (reshaped to their grid).

    Returns (heat maps float32 (N, H, W) in [0, 1], logits (N, K), layer).
    """
    images = jnp.asarray(images, jnp.float32)
    model, variables = _unscanned(model, variables)
    layer = layer or default_token_layer(model, variables, images)
    if target is not None:
        target = jnp.broadcast_to(jnp.asarray(target, jnp.int32), images.shape[:1])
    act, grad, logits = layer_gradients(model, variables, images, layer, target)
    if act.ndim != 3:
        raise ValueError(f"token Grad-CAM needs tokens (N, T, D); {layer!r} outputs {act.shape}")
    prefix, gh, gw = token_grid(act.shape[1], images.shape[1:3])
    act, grad = act[:, prefix:], grad[:, prefix:]
    alpha = grad.mean(axis=1, keepdims=True)
    cam = jax.nn.relu((alpha * act).sum(-1)).reshape(-1, gh, gw)
    cam = cam / jnp.maximum(cam.max(axis=(1, 2), keepdims=True), 1e-12)
    return upsample(cam, images.shape[1:3]), logits, layer


def _attention_weights(module: MultiHeadSelfAttention, x: jax.Array) -> jax.Array:
    """softmax(q k^T / sqrt(d)) of a self-attention module for input tokens x: (N, H, T, T)."""
    params = module.variables["params"]

    def project(name):
        p = params[name]
        y = jnp.einsum("ntd,dhk->nthk", x.astype(jnp.float32), p["kernel"].astype(jnp.float32))
        return y + p["bias"] if "bias" in p else y

    q, k = project("query"), project("key")
    logits = jnp.einsum("nqhd,nkhd->nhqk", q, k) / jnp.sqrt(q.shape[-1]).astype(jnp.float32)
    return jax.nn.softmax(logits, axis=-1)


def attention_rollout(
    model: nn.Module,
    variables: Any,
    images: jax.Array,
    *,
    residual_weight: float = 0.5,
) -> tuple[jax.Array, jax.Array]:
    """Attention rollout: the product over layers of head-averaged attention mixed with the
    identity (for the residual path), rows renormalized. The class token's row (or the mean row
    of the patch tokens for GAP models) over the patch tokens is the heat map.

    Returns (heat maps float32 (N, H, W) in [0, 1], logits (N, K)).
    """
    images = jnp.asarray(images, jnp.float32)
    model, variables = _unscanned(model, variables)

    def run(x):
        maps = []

        def capture(next_fun, args, kwargs, context):
            if context.method_name == "__call__" and isinstance(
                context.module, MultiHeadSelfAttention
            ):
                maps.append(_attention_weights(context.module, args[0]))
            return next_fun(*args, **kwargs)

        with nn.intercept_methods(capture):
            logits = model.apply(variables, x, train=False)
        return logits.astype(jnp.float32), maps

    logits, maps = jax.jit(run)(images)
    if not maps:
        raise ValueError(
            "the model has no MultiHeadSelfAttention layer; attention rollout is for ViTs and "
            "hybrids (use method='gradcam' for CNNs)"
        )
    num_tokens = maps[0].shape[-1]
    eye = jnp.eye(num_tokens)
    rollout = jnp.broadcast_to(eye, (images.shape[0], num_tokens, num_tokens))
    for w in maps:
        a = residual_weight * eye + (1 - residual_weight) * w.mean(axis=1)
        a = a / a.sum(axis=-1, keepdims=True)
        rollout = a @ rollout
    prefix, gh, gw = token_grid(num_tokens, images.shape[1:3])
    rows = rollout[:, 0, prefix:] if prefix else rollout[:, prefix:, prefix:].mean(axis=1)
    heat = rows.reshape(-1, gh, gw)
    heat = heat - heat.min(axis=(1, 2), keepdims=True)
    heat = heat / jnp.maximum(heat.max(axis=(1, 2), keepdims=True), 1e-12)
    return upsample(heat, images.shape[1:3]), logits


_ = _name  # re-exported helper used by the interceptors of this package
