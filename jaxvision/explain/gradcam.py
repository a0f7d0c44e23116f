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

__all__ = ["MIN_CAM_SIDE", "align_to_input", "default_layer", "feature_centers", "feature_layers",
           "gradcam", "layer_gradients", "upsample"]


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
    calls = _calls(model, variables, images)
    # Inside a token module (N, T, D), 4-D outputs are attention heads (N, T, heads, d), not maps.
    token_modules = {name + "/" for name, shape in calls if len(shape) == 3}
    seen: dict[str, tuple] = {}
    for name, shape in calls:
        if len(shape) == 4 and not any(name.startswith(t) for t in token_modules):
            seen.pop(name, None)
            seen[name] = shape
    return list(seen.items())


# Smallest feature-map side the default Grad-CAM layer may have: 7 is the last stage of the
# ImageNet CNNs at 224 px (ResNet, VGG, EfficientNet), the resolution Grad-CAM is usually shown at
# (Selvaraju et al. 2017). At small inputs (ResNet-18 at 64 px: 2x2) an earlier stage is taken.
MIN_CAM_SIDE = 7


def default_layer(model: nn.Module, variables: Any, images: jax.Array) -> str:
    """The last feature map before pooling whose grid is at least ``MIN_CAM_SIDE`` on its shorter
    side (or the largest grid when none is): the module call producing a 4-D output that finishes
    last. Being the outermost such module (a stage or block finishes after its children), it is
    the last convolutional stage of a CNN and the convolutional stem of a hybrid."""
    layers = [(n, s) for n, s in feature_layers(model, variables, images) if s[1] * s[2] > 1]
    if not layers:
        raise ValueError(
            "the model has no module with a spatial (N, h, w, C) output larger than 1x1; Grad-CAM "
            "needs one (for ViTs use method='rollout' or jaxvision.explain.vit.token_gradcam)"
        )
    side = min(MIN_CAM_SIDE, max(min(s[1], s[2]) for _, s in layers))
    return [n for n, s in layers if min(s[1], s[2]) >= side][-1]


def _forward(model: nn.Module, variables: Any, layer: str, last: int):
    """``forward(delta, x) -> (float32 logits, float32 activation of layer)``, ``delta`` added to
    the ``last``-th call's output (its gradient is the gradient w.r.t. the activation)."""

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

    return forward


def _layer_call(model, variables, images, layer) -> tuple[int, tuple]:
    """(index of the last call of ``layer``, its output shape)."""
    calls = _calls(model, variables, images)
    shapes = [s for n, s in calls if n == layer]
    if not shapes:
        names = sorted({n for n, _ in calls})
        raise ValueError(f"no module named {layer!r} in the model; module paths are: {names}")
    return len(shapes) - 1, shapes[-1]


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
    last, shape = _layer_call(model, variables, images, layer)
    forward = _forward(model, variables, layer, last)

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
    return _renormalize(maps)


def _renormalize(maps):
    maps = jnp.clip(maps, 0.0, None)
    return maps / jnp.maximum(maps.max(axis=(1, 2), keepdims=True), 1e-12)


def _structural_variables(variables: Any) -> Any:
    """The same tree with every kernel a mean filter (1 / fan-in), biases and BatchNorm shifts 0,
    scales and variances 1: with a positive input every activation is positive, so the gradient
    of a cell w.r.t. the input counts the paths to each pixel, symmetric about the cell's centre."""

    def leaf(path, x):
        name = str(getattr(path[-1], "key", path[-1]))
        if name == "kernel" and x.ndim >= 2:
            return jnp.full(x.shape, 1.0 / max(1, int(jnp.prod(jnp.array(x.shape[:-1])))), x.dtype)
        if name in ("bias", "mean"):
            return jnp.zeros_like(x)
        if name in ("scale", "var"):
            return jnp.ones_like(x)
        return x

    return jax.tree_util.tree_map_with_path(leaf, variables)


def feature_centers(model: nn.Module, variables: Any, images: jax.Array, layer: str
                    ) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Where the feature map's cells sit in the input: ``((a_y, b_y), (a_x, b_x))`` with input
    coordinate = a + b * cell index, or None when it cannot be measured.

    Measured, so every padding and stride convention is covered (valid convolutions, as LeNet's,
    do not tile the input edge to edge): the centroid of |d sum_c A[i, j, c] / d input| for two
    interior cells per axis (a quarter of the grid in from each side, where the receptive field is
    not cut off by the border), a line through them. The gradient is taken through the model's
    structure (``_structural_variables`` on a constant input), so trained or random weights do not
    move the centroid; when that gives no gradient (e.g. weight-standardized kernels), through the
    real weights and images.
    """
    probe = jnp.ones_like(images[:1], jnp.float32)
    found = _centers(model, _structural_variables(variables), probe, layer)
    return found if found is not None else _centers(model, variables, images[:1], layer)


def _centers(model, variables, images, layer):
    last, shape = _layer_call(model, variables, images[:1], layer)
    _, h, w, _ = shape
    forward = _forward(model, variables, layer, last)
    cells = [(round((h - 1) / 4), round((w - 1) / 4)), (round(3 * (h - 1) / 4),
                                                       round(3 * (w - 1) / 4))]
    if cells[0] == cells[1]:
        return None

    def cell_sum(x, i, j):
        return forward(jnp.zeros(shape, jnp.float32), x)[1][0, i, j].sum()

    grid_y, grid_x = jnp.meshgrid(jnp.arange(images.shape[1]), jnp.arange(images.shape[2]),
                                  indexing="ij")
    cell_grad = jax.jit(jax.grad(cell_sum), static_argnums=(1, 2))
    centroids = []
    for i, j in cells:
        g = jnp.abs(cell_grad(images[:1].astype(jnp.float32), i, j)[0]).sum(-1)
        total = float(g.sum())
        if not (total > 0 and jnp.isfinite(total)):
            return None
        centroids.append((float((g * grid_y).sum()) / total, float((g * grid_x).sum()) / total))
    (y0, x0), (y1, x1) = centroids
    (i0, j0), (i1, j1) = cells
    by, bx = (y1 - y0) / (i1 - i0), (x1 - x0) / (j1 - j0)
    if by <= 0 or bx <= 0:
        return None
    return (y0 - by * i0, by), (x0 - bx * j0, bx)


def align_to_input(maps: jax.Array, centers, size: tuple[int, int]) -> jax.Array:
    """(N, h, w) cell maps -> (N, H, W): each input pixel reads the map (bilinear) at the cell
    position whose centre it is (``feature_centers``). Beyond the first/last centres the map
    fades to 0 over one cell: no cell is centred there, and stretching the edge cells over the
    border (LeNet's valid convolutions leave 6 px) would light empty background."""
    (ay, by), (ax, bx) = centers
    ys = (jnp.arange(size[0], dtype=jnp.float32) - ay) / by
    xs = (jnp.arange(size[1], dtype=jnp.float32) - ax) / bx
    yy, xx = jnp.meshgrid(ys, xs, indexing="ij")

    def one(m):
        return jax.scipy.ndimage.map_coordinates(m, [yy, xx], order=1, mode="constant", cval=0.0)

    return _renormalize(jax.vmap(one)(maps))


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
      The map is placed on the input where its cells' receptive fields are centred
      (``feature_centers``), not stretched edge to edge.
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
        centers = feature_centers(model, variables, images, layer)
        cam = (upsample(cam, images.shape[1:3]) if centers is None
               else align_to_input(cam, centers, images.shape[1:3]))
    return cam, logits, layer
