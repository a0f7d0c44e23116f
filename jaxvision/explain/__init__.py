"""Explainability: Grad-CAM (CNNs), attention rollout / token Grad-CAM (ViTs, hybrids), vanilla
and integrated-gradient saliency, and PNG overlays.

``explain(run, images, method=...)`` is the one-call entry used by ``python -m jaxvision.explain``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import lazy_loader as _lazy

from jaxvision.explain.gradcam import default_layer, feature_layers, gradcam, layer_gradients
from jaxvision.explain.saliency import integrated_gradients, saliency_map, vanilla_gradients
from jaxvision.explain.vit import attention_rollout, token_gradcam

# Lazy: the overlays need matplotlib, the heat maps do not.
__getattr__, __dir__, _ = _lazy.attach(
    __name__, submod_attrs={"overlay": ["overlay_array", "save_overlay"]})

__all__ = [
    "METHODS",
    "attention_rollout",
    "default_layer",
    "explain",
    "feature_layers",
    "gradcam",
    "integrated_gradients",
    "layer_gradients",
    "overlay_array",
    "saliency_map",
    "save_overlay",
    "token_gradcam",
    "vanilla_gradients",
]

METHODS = ("gradcam", "saliency", "integrated_gradients", "rollout", "token_gradcam")


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
    """Heat maps (N, H, W) in [0, 1] at input resolution and logits (N, K) for ``method``.

    ``images`` are model inputs (N, H, W, C), normalized; ``target`` defaults to the predicted
    class; ``layer`` applies to 'gradcam' / 'token_gradcam'; ``baseline``/``steps`` to
    'integrated_gradients'.
    """
    images = jnp.asarray(images, jnp.float32)

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
    if method == "integrated_gradients":
        attr = integrated_gradients(logits_fn, images, target, baseline=baseline, steps=steps)
        return saliency_map(attr), logits_fn(images)
    raise ValueError(f"unknown explanation method {method!r}; choose from {METHODS}")
