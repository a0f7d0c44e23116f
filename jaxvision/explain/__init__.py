"""Explainability: Grad-CAM (CNNs), attention rollout / token Grad-CAM (ViTs, hybrids), vanilla
and integrated-gradient saliency, and PNG overlays with a colour bar.

``explain(model, variables, images, method=...)`` is the one-call entry used by
``python -m jaxvision.explain``.
"""

from jaxvision.explain.gradcam import default_layer, feature_layers, gradcam, layer_gradients
from jaxvision.explain.methods import METHODS, check_method, explain
from jaxvision.explain.overlay import overlay_array, save_overlay
from jaxvision.explain.saliency import integrated_gradients, saliency_map, vanilla_gradients
from jaxvision.explain.vit import attention_rollout, token_gradcam

__all__ = [
    "METHODS",
    "attention_rollout",
    "check_method",
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
