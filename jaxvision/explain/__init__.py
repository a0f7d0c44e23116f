"""Explainability: Grad-CAM (CNNs), attention rollout / token Grad-CAM (ViTs, hybrids), vanilla
and integrated-gradient saliency, and PNG overlays with a colour bar.

``explain(model, variables, images, method=...)`` is the one-call entry used by
``python -m jaxvision.explain``.
"""

import lazy_loader as _lazy

from jaxvision.explain.gradcam import default_layer, feature_layers, gradcam, layer_gradients
from jaxvision.explain.methods import METHODS, check_method, explain
from jaxvision.explain.saliency import integrated_gradients, saliency_map, vanilla_gradients
from jaxvision.explain.vit import attention_rollout, token_gradcam

# Lazy: the overlays need matplotlib, the heat maps do not.
__getattr__, __dir__, _ = _lazy.attach(
    __name__, submod_attrs={"overlay": ["overlay_array", "save_overlay"]})

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
