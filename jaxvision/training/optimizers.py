"""Optax optimizers and learning-rate schedules from the config.

All schedule arguments are in *optimizer updates*: with ``grad_accum_steps = k`` the optimizer updates
every k train steps, so step counts from the config are divided by k.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util


def param_names(params) -> dict:
    """Same-structured tree of '/'-joined parameter paths, e.g. 'head/kernel'."""
    flat = traverse_util.flatten_dict(params, sep="/")
    return traverse_util.unflatten_dict({k: k for k in flat}, sep="/")


def decay_mask(params, *, decay_norms_and_biases: bool = False, no_decay_regex: str = ""):
    """True where weight decay applies: kernels/embeddings, unless named by the regex.

    Biases and norm scales/offsets (BatchNorm, LayerNorm, GroupNorm) are not decayed unless
    ``decay_norms_and_biases`` (the ResNet/EfficientNet recipes exclude them). They are found by
    name (``bias``/``scale``) as well as by ndim <= 1, because attention biases are (heads,
    head_dim) and ``nn.scan`` stacks per-layer norms into (depth, D).
    """
    flat = traverse_util.flatten_dict(params, sep="/")
    rx = re.compile(no_decay_regex) if no_decay_regex else None

    def is_norm_or_bias(k, v):
        return v.ndim <= 1 or k.rsplit("/", 1)[-1] in ("bias", "scale")

    mask = {
        k: bool((decay_norms_and_biases or not is_norm_or_bias(k, v)) and not (rx and rx.search(k)))
        for k, v in flat.items()
    }
    return traverse_util.unflatten_dict(mask, sep="/")


def lr_multiplier_tree(params, multipliers, freeze: str = ""):
    """Per-parameter learning-rate factor: the first matching regex of ``multipliers`` wins;
    parameters matching ``freeze`` get 0. Returns None when every factor is 1."""
    pairs = _parse_multipliers(multipliers)
    if freeze:
        pairs = [(freeze, 0.0), *pairs]
    if not pairs:
        return None
    compiled = [(re.compile(r), float(f)) for r, f in pairs]
    flat = traverse_util.flatten_dict(params, sep="/")

    def factor(name):
        for rx, f in compiled:
            if rx.search(name):
                return f
        return 1.0

    return traverse_util.unflatten_dict({k: factor(k) for k in flat}, sep="/")


def _parse_multipliers(multipliers):
    """``((regex, factor), ...)`` or the string form ``'regex=factor,regex=factor'``."""
    if not multipliers:
        return []
    if isinstance(multipliers, str):
        out = []
        for part in multipliers.split(","):
            rx, _, f = part.rpartition("=")
            if not rx:
                raise ValueError(
                    f"optimizer.lr_multipliers entry {part!r} must look like 'regex=factor'."
                )
            out.append((rx, float(f)))
        return out
    return [(str(r), float(f)) for r, f in multipliers]


def scale_by_tree(factors) -> optax.GradientTransformation:
    """Multiply each update by its factor (a tree of floats like params)."""

    def update_fn(updates, state, params=None):
        del params
        return jax.tree.map(lambda u, f: u * jnp.asarray(f, u.dtype), updates, factors), state

    return optax.GradientTransformation(lambda _: optax.EmptyState(), update_fn)


def peak_learning_rate(config) -> float:
    """``schedule.base_lr``, scaled by effective batch / ``lr_batch_reference`` when that is set."""
    s = config.schedule
    lr = float(s.base_lr)
    if s.lr_batch_reference:
        lr *= config.batch_size * config.grad_accum_steps / s.lr_batch_reference
    return lr


def build_schedule(config, *, total_steps: int, steps_per_epoch: int) -> Callable:
    """The learning-rate schedule ``step -> lr`` (step counted in optimizer updates).

    Warm-up is linear from 0 (as the Flax ImageNet example and the TF EfficientNet code); the decay
    is a function of the absolute update step, like those references.
    """
    s = config.schedule
    k = max(1, config.grad_accum_steps)
    total = max(1, total_steps // k)
    spe = steps_per_epoch / k
    peak = peak_learning_rate(config)
    warmup = int(round(s.warmup_epochs * spe)) if s.warmup_epochs else int(s.warmup_steps) // k
    warmup = min(warmup, total)

    if s.name == "cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=peak,
            warmup_steps=warmup,
            decay_steps=max(total, warmup + 1),
            end_value=peak * s.end_lr_factor,
        )
    if s.name == "linear":
        decay = optax.linear_schedule(peak, peak * s.end_lr_factor, max(1, total - warmup))
        main = decay
    elif s.name == "constant":
        main = optax.constant_schedule(peak)
    elif s.name == "step":
        if s.boundaries_epochs:
            bounds = [int(round(e * spe)) for e in s.boundaries_epochs]
        else:
            bounds = [int(b) // k for b in s.boundaries]
        if not bounds:
            raise ValueError(
                "schedule.name='step' needs schedule.boundaries (steps) or "
                "schedule.boundaries_epochs, e.g. --config.schedule.boundaries_epochs='(30,60,80)'."
            )
        main = optax.piecewise_constant_schedule(peak, {b: s.step_factor for b in bounds})
    elif s.name == "exponential":
        decay_steps = s.decay_epochs * spe if s.decay_epochs else s.decay_steps / k
        if decay_steps <= 0:
            raise ValueError(
                "schedule.name='exponential' needs schedule.decay_epochs or schedule.decay_steps > 0."
            )

        def main(step):
            p = step / decay_steps
            if s.staircase:
                p = jnp.floor(p)
            return peak * jnp.power(s.decay_rate, p)

    else:  # pragma: no cover - check() rejects other names first
        raise ValueError(f"unknown schedule {s.name!r}")

    if not warmup:
        return main
    if s.name == "linear":  # the linear decay starts after warm-up
        return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], [warmup])

    def schedule(step):
        step = jnp.asarray(step)
        return jnp.where(step < warmup, peak * step / warmup, main(step))

    return schedule


def build_optimizer(
    config, params, *, total_steps: int, steps_per_epoch: int
) -> tuple[optax.GradientTransformation, Callable]:
    """(tx, schedule) for ``params`` from ``config.optimizer`` / ``config.schedule``.

    Chain: global-norm clipping -> [coupled L2 for sgd/adam/rmsprop] -> optimizer (lr schedule,
    decoupled decay for adamw/lamb) -> per-parameter lr multipliers / freezing; wrapped in
    ``optax.MultiSteps`` when ``grad_accum_steps > 1``.
    """
    o = config.optimizer
    schedule = build_schedule(config, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
    mask = decay_mask(
        params, decay_norms_and_biases=o.decay_norms_and_biases, no_decay_regex=o.no_decay_regex
    )
    parts = []
    if config.clip_grad_norm:
        parts.append(optax.clip_by_global_norm(config.clip_grad_norm))
    wd = float(o.weight_decay)
    if wd and o.name in ("sgd", "adam", "rmsprop"):
        # Coupled L2 (grad += wd * w), as PyTorch SGD and the TF EfficientNet/ResNet losses do.
        parts.append(optax.add_decayed_weights(wd, mask))
    if o.name == "sgd":
        parts.append(
            optax.sgd(schedule, momentum=o.momentum or None, nesterov=bool(o.nesterov))
        )
    elif o.name == "adam":
        parts.append(optax.adam(schedule, b1=o.b1, b2=o.b2, eps=o.eps))
    elif o.name == "adamw":
        parts.append(optax.adamw(schedule, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=wd, mask=mask))
    elif o.name == "rmsprop":
        # TF-style: epsilon inside the square root and the mean square initialised to 1
        # (tf.compat.v1.train.RMSPropOptimizer), as in the official EfficientNet code.
        # The learning rate goes inside the momentum (mom = m * mom + lr * g / rms), as TF1 does;
        # optax.rmsprop applies it after the trace, which differs whenever the rate changes.
        parts.append(optax.scale_by_rms(decay=o.decay, eps=o.eps, initial_scale=1.0,
                                        eps_in_sqrt=True))
        parts.append(optax.scale_by_learning_rate(schedule))
        if o.momentum:
            parts.append(optax.trace(decay=o.momentum, nesterov=bool(o.nesterov)))
    elif o.name == "lamb":
        parts.append(optax.lamb(schedule, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=wd, mask=mask))
    else:  # pragma: no cover
        raise ValueError(f"unknown optimizer {o.name!r}")
    factors = lr_multiplier_tree(params, o.lr_multipliers, o.freeze)
    if factors is not None:
        parts.append(scale_by_tree(factors))
    tx = optax.chain(*parts)
    tx = _maybe_prune(tx, config, total_steps)
    if config.grad_accum_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=int(config.grad_accum_steps))
    return tx, schedule


def _maybe_prune(tx, config, total_steps: int):
    """Wrap ``tx`` with gradual global magnitude pruning when ``config.pruning.target_sparsity``."""
    p = config.get("pruning")
    if p is None or not p.target_sparsity:
        return tx
    from jaxvision.training import pruning

    end = int(p.end_step or total_steps)
    schedule = pruning.polynomial_sparsity(
        float(p.target_sparsity), begin_step=int(p.begin_step), end_step=end)
    return pruning.prune(tx, schedule, update_every=int(p.update_every))
