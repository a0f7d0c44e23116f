"""``explain(model, variables, images, method=...)``: one call for every explanation method, and
the check that a model can do a method at all."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.explain.gradcam import feature_layers, gradcam
from jaxvision.explain.saliency import integrated_gradients, saliency_map, vanilla_gradients
from jaxvision.explain.vit import attention_rollout, token_gradcam
from jaxvision.layers.attention import MultiHeadSelfAttention

METHODS = ("gradcam", "saliency", "integrated_gradients", "rollout", "token_gradcam")
ATTENTION_METHODS = ("rollout", "token_gradcam")


def _has_attention(model: nn.Module, variables: Any, images: jax.Array) -> bool:
    found = []

    def spot(next_fun, args, kwargs, context):
        if isinstance(context.module, MultiHeadSelfAttention):
            found.append(True)
        return next_fun(*args, **kwargs)

    def run(x):
        with nn.intercept_methods(spot):
            return model.apply(variables, x, train=False)

    jax.eval_shape(run, images[:1])
    return bool(found)


def check_method(model: nn.Module, variables: Any, images: jax.Array, method: str) -> None:
    """Raise ValueError (one sentence naming what fits) when ``model`` cannot do ``method``:
    rollout / token Grad-CAM need self-attention (ViTs, hybrids), Grad-CAM a spatial feature map
    (CNNs, hybrids); saliency and integrated gradients work for every model."""
    if method not in METHODS:
        raise ValueError(f"unknown explanation method {method!r}; choose from {', '.join(METHODS)}")
    if method in ATTENTION_METHODS and not _has_attention(model, variables, images):
        raise ValueError(f"--method {method} needs self-attention layers (ViTs, hybrids) and "
                         f"{type(model).__name__} has none; use gradcam, saliency or "
                         "integrated_gradients")
    if method == "gradcam" and not any(
            s[1] * s[2] > 1 for _, s in feature_layers(model, variables, images[:1])):
        raise ValueError(f"--method gradcam needs a spatial feature map and "
                         f"{type(model).__name__} has none; use rollout, token_gradcam or saliency")


def explain(
    model: Any,
    variables: Any,
    images: jax.Array,
    *,
    method: str = "gradcam",
    layer: str | None = None,
    target=None,
    baseline: jax.Array | None = None,
    steps: int = 32,
) -> tuple[jax.Array, jax.Array]:
    """Heat maps (N, H, W) float32 in [0, 1] at input resolution and logits (N, K) for ``method``.

    ``images`` are model inputs (N, H, W, C), normalized; ``target`` defaults to the predicted
    class; ``layer`` applies to 'gradcam' / 'token_gradcam'; ``baseline``/``steps`` to
    'integrated_gradients'. Raises ValueError when the model cannot do ``method``
    (``check_method``).
    """
    images = jnp.asarray(images, jnp.float32)
    check_method(model, variables, images, method)

    def logits_fn(x):
        return model.apply(variables, x, train=False)

    if method == "gradcam":
        heat, logits, _ = gradcam(model, variables, images, layer=layer, target=target)
        return heat, logits
    if method == "token_gradcam":
        heat, logits, _ = token_gradcam(model, variables, images, layer=layer, target=target)
        return heat, logits
    if method == "rollout":
        return attention_rollout(model, variables, images)
    if method == "saliency":
        return saliency_map(vanilla_gradients(logits_fn, images, target)), logits_fn(images)
    attr = integrated_gradients(logits_fn, images, target, baseline=baseline, steps=steps)
    return saliency_map(attr), logits_fn(images)
