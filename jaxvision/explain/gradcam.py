"""Grad-CAM (Selvaraju et al. 2017) for any Linen model, the layer chosen by its module path.

The activation of a layer is read, and its gradient obtained, with ``flax.linen.intercept_methods``:
the chosen module's output gets a zero perturbation added, and the gradient of the class logit
w.r.t. that perturbation is the gradient w.r.t. the activation. Models need no changes.

Layer names are module paths joined by '/', e.g. ``'stage4'`` or ``'stage4/block2'``; see
``feature_layers(model, variables, images)`` for every candidate of a model.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["default_layer", "feature_layers", "gradcam", "layer_gradients", "upsample"]


def _name(module: nn.Module) -> str:
    return "/".join(str(p) for p in module.path)


def _calls(model: nn.Module, variables: Any, images: jax.Array) -> list[tuple[str, tuple]]:
    """(path, output shape) of every module ``__call__`` in completion order (shapes only)."""
    calls: list[tuple[str, tuple]] = []

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__" and hasattr(out, "shape") and context.module.path:
            calls.append((_name(context.module), tuple(out.shape)))
        return out

    def run(v, x):
        with nn.intercept_methods(record):
            return model.apply(v, x, train=False)

    jax.eval_shape(run, variables, images)
    return calls


def feature_layers(model: nn.Module, variables: Any, images: jax.Array) -> list[tuple[str, tuple]]:
    """Module paths whose output is a feature map (N, h, w, C) — Grad-CAM candidates — in the
    order their calls finish, with the output shape."""
    seen: dict[str, tuple] = {}
    for name, shape in _calls(model, variables, images):
        if len(shape) == 4:
            seen.pop(name, None)
            seen[name] = shape
    return list(seen.items())


def default_layer(model: nn.Module, variables: Any, images: jax.Array) -> str:
    """The last feature map before pooling: the module call producing a 4-D output that finishes
    last. Being the outermost such module (a stage or block finishes after its children), it is
    the last convolutional stage of a CNN and the convolutional stem of a hybrid."""
    layers = [(n, s) for n, s in feature_layers(model, variables, images) if s[1] * s[2] > 1]
    if not layers:
        raise ValueError(
            "the model has no module with a spatial (N, h, w, C) output larger than 1x1; Grad-CAM "
            "needs one (for ViTs use method='rollout' or jaxvision.explain.vit.token_gradcam)"
        )
    return layers[-1][0]


def layer_gradients(
    model: nn.Module,
    variables: Any,
    images: jax.Array,
    layer: str,
    target: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Activation of ``layer`` and the gradient of the target logit w.r.t. it.

    When the module is called several times, the last call is used.

    Returns:
      (activation, gradient, logits); activation/gradient have the layer's output shape (float32),
      logits (N, K) float32.
    """
    calls = _calls(model, variables, images)
    index = [i for i, (n, _) in enumerate(calls) if n == layer]
    if not index:
        names = sorted({n for n, _ in calls})
        raise ValueError(f"no module named {layer!r} in the model; module paths are: {names}")
    last = sum(1 for n, _ in calls if n == layer) - 1
    shape = calls[index[-1]][1]

    def forward(delta, x):
        count, acts = [0], []

        def perturb(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if context.method_name == "__call__" and _name(context.module) == layer:
                if count[0] == last:
                    acts.append(out)
                    out = out + delta.astype(out.dtype)
                count[0] += 1
            return out

        with nn.intercept_methods(perturb):
            logits = model.apply(variables, x, train=False).astype(jnp.float32)
        return logits, acts[0].astype(jnp.float32)

    def score(delta, x):
        logits, act = forward(delta, x)
        t = (
            jnp.argmax(logits, axis=-1)
            if target is None
            else jnp.broadcast_to(target, logits.shape[:1])
        )
        return jnp.take_along_axis(logits, t[:, None], axis=-1).sum(), (act, logits)

    grad_fn = jax.jit(jax.grad(score, has_aux=True))  # one compiled program, not op-by-op
    grad, (act, logits) = grad_fn(jnp.zeros(shape, jnp.float32), images)
    return act, grad, logits


def upsample(maps: jax.Array, size: tuple[int, int]) -> jax.Array:
    """(N, h, w) maps in [0, 1] -> (N, H, W) bilinear, rescaled so each map's peak is 1 again."""
    maps = jax.image.resize(maps, (maps.shape[0], *size), method="bilinear")
    maps = jnp.clip(maps, 0.0, None)
    return maps / jnp.maximum(maps.max(axis=(1, 2), keepdims=True), 1e-12)


def gradcam(
    model: nn.Module,
    variables: Any,
    images: jax.Array,
    *,
    layer: str | None = None,
    target=None,
    upsample_to_input: bool = True,
) -> tuple[jax.Array, jax.Array, str]:
    """Grad-CAM heat maps.

    ``cam = relu(sum_c alpha_c A_c)`` with ``alpha_c`` the spatial mean of d logit[target] / dA_c.

    Args:
      images: (N, H, W, C) model inputs (normalized).
      layer: module path; default ``default_layer`` (last conv stage).
      target: class index or (N,) indices; default the predicted class.
    Returns:
      (heat maps float32 (N, H, W) in [0, 1] — (N, h, w) if not upsampled —, logits (N, K), layer).
    """
    images = jnp.asarray(images, jnp.float32)
    layer = layer or default_layer(model, variables, images)
    if target is not None:
        target = jnp.broadcast_to(jnp.asarray(target, jnp.int32), images.shape[:1])
    act, grad, logits = layer_gradients(model, variables, images, layer, target)
    if act.ndim != 4:
        raise ValueError(
            f"Grad-CAM needs a feature map (N, h, w, C); layer {layer!r} outputs shape {act.shape}"
        )
    alpha = grad.mean(axis=(1, 2), keepdims=True)
    cam = jax.nn.relu((alpha * act).sum(axis=-1))
    cam = cam / jnp.maximum(cam.max(axis=(1, 2), keepdims=True), 1e-12)
    if upsample_to_input:
        cam = upsample(cam, images.shape[1:3])
    return cam, logits, layer
