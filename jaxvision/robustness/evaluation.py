"""Robustness of a trained model: adversarial accuracy (FGSM, PGD) and accuracy under common
corruptions, over an evaluation pipeline, with the pixel normalization taken from its data config.

``evaluate_robustness(run, pipeline, ...)`` is what ``python -m jaxvision.evaluate --attack pgd
--eps 0.03`` calls; its result (a JSON-serializable dict) is stored under ``'robustness'`` in
metrics.json.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision.robustness.attacks import Normalization, fgsm, pgd
from jaxvision.robustness.corruptions import CORRUPTIONS, corrupt

# Named normalizations -> (mean, std) applied to pixels in [0, 1].
_NAMED = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "minus_one_one": ((0.5,), (0.5,)),
    "zero_one": ((0.0,), (1.0,)),
    "none": ((0.0,), (1.0,)),
    "identity": ((0.0,), (1.0,)),
    "unit": ((0.0,), (1.0,)),
}


def _get(cfg: Any, key: str, default=None):
    if cfg is None:
        return default
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    try:
        return cfg[key] if key in cfg else default
    except TypeError:
        return getattr(cfg, key, default)


def _dataset_constants(config_data: Any):
    """(mean, std) the data pipeline resolves for ``mean=None`` (dataset constants), if it says."""
    try:
        from jaxvision import data
    except ImportError:  # pragma: no cover
        return None, None
    if not hasattr(data, "resolve_config"):  # pragma: no cover
        return None, None
    resolved = data.resolve_config(config_data)
    return tuple(np.ravel(resolved.mean).tolist()), tuple(np.ravel(resolved.std).tolist())


def normalization_from_config(config_data: Any) -> Normalization:
    """The pixel -> model-input map of a data config (``config.data``).

    Reads ``mean``/``std`` (top level or inside ``normalization``) or a named normalization
    (``'imagenet'``, ``'inception'``/``'minus_one_one'``, ``'zero_one'``/``'none'``).
    """
    norm = _get(config_data, "normalization")
    mean, std = _get(config_data, "mean"), _get(config_data, "std")
    if isinstance(mean, str) or isinstance(std, str):  # data config: mean='none' -> [0, 1] pixels
        norm, mean, std = (mean if isinstance(mean, str) else std), None, None
    if mean is None and std is None and norm is None and config_data is not None:
        mean, std = _dataset_constants(config_data)
    if norm is not None and not isinstance(norm, str):
        mean = _get(norm, "mean", mean)
        std = _get(norm, "std", std)
        norm = _get(norm, "name", _get(norm, "kind"))
    if mean is not None and std is not None and (norm in (None, "custom", "dataset", "mean_std")):
        return Normalization(tuple(np.ravel(mean).tolist()), tuple(np.ravel(std).tolist()))
    if isinstance(norm, str):
        key = norm.lower()
        if key in _NAMED:
            m, s = _NAMED[key]
            return Normalization(m if len(m) > 1 else m[0], s if len(s) > 1 else s[0])
        if mean is not None and std is not None:
            return Normalization(tuple(np.ravel(mean).tolist()), tuple(np.ravel(std).tolist()))
        raise ValueError(
            f"unknown data normalization {norm!r}: pass normalization=Normalization(mean, std) "
            "to evaluate_robustness"
        )
    if mean is not None and std is not None:
        return Normalization(tuple(np.ravel(mean).tolist()), tuple(np.ravel(std).tolist()))
    return Normalization()


def _accuracy(correct: float, count: float) -> float:
    return float(correct / count) if count else math.nan


def evaluate_robustness(
    run: Any,
    pipeline: Iterable[Mapping[str, np.ndarray]],
    *,
    attack: str | None = "pgd",
    eps: float = 8 / 255,
    steps: int = 10,
    step_size: float | None = None,
    norm: str = "linf",
    random_start: bool = True,
    corruptions: Sequence[str] = tuple(CORRUPTIONS),
    severities: Sequence[int] = (1, 3, 5),
    seed: int = 0,
    max_batches: int | None = None,
    normalization: Normalization | None = None,
) -> dict[str, Any]:
    """Clean, adversarial and corrupted top-1 accuracy of a trained run, in one pass over ``pipeline``.

    Args:
      run: what ``jaxvision.training.checkpoints.load_run`` returns (``model``, ``variables``,
        ``config``); any object with those attributes works.
      pipeline: finite evaluation batches ``{'image' (B, H, W, C) normalized, 'label' (B,),
        'mask' (B,) optional}``.
      attack: ``'pgd'`` (also reports FGSM at the same eps for comparison), ``'fgsm'`` or
        ``None``/``'none'`` (corruptions only).
      eps, steps, step_size, norm, random_start: attack settings; ``eps`` and ``step_size`` are in
        pixel units (pixels in [0, 1]), see ``jaxvision.robustness.attacks``.
      corruptions, severities: names from ``CORRUPTIONS`` and severities in 1..5.
      max_batches: stop after this many batches (quick looks).
      normalization: overrides the one read from ``run.config.data``.

    Returns:
      ``{'num_examples', 'clean_top1', 'attack': {settings}, 'fgsm_top1', 'pgd_top1',
      'corruptions': {name: {severity: top1, 'mean': top1}}, 'corruption_mean_top1'}``.
    """
    attack = _checked_attack(attack, corruptions)
    if normalization is None:
        normalization = normalization_from_config(_get(getattr(run, "config", None), "data"))
    settings = dict(eps=eps, steps=steps, step_size=step_size, norm=norm,
                    random_start=random_start, normalization=normalization)
    model, variables = run.model, run.variables
    predictors = _predictors(model, attack, settings)
    names = list(predictors) + [f"{c}/{s}" for c in corruptions for s in severities]
    correct = dict.fromkeys(names, 0.0)
    count = 0.0
    rng = jax.random.key(seed)
    for i, batch in enumerate(pipeline):
        if max_batches is not None and i >= max_batches:
            break
        x = jnp.asarray(batch["image"])
        y = np.asarray(batch["label"]).astype(np.int32)
        mask = np.asarray(batch.get("mask", np.ones(y.shape, bool)), bool)
        count += mask.sum()

        def tally(key, pred, y=y, mask=mask):
            correct[key] += float(((np.asarray(pred) == y) & mask).sum())

        args = (jnp.asarray(y), jax.random.fold_in(rng, i))
        for name, predict in predictors.items():
            tally(name, predict(variables, x, *args))
        for key, bad in _corrupted(x, normalization, corruptions, severities, seed * 100003 + i):
            tally(key, predictors["clean"](variables, bad, *args))
    return _report(correct, count, attack, settings, corruptions, severities)


def _checked_attack(attack: str | None, corruptions: Sequence[str]) -> str | None:
    """``attack`` with its spellings of "none" made ``None``; ValueError for an unknown attack or
    corruption."""
    attack = None if attack in (None, "none", "") else attack
    if attack not in (None, "fgsm", "pgd"):
        raise ValueError(f"attack must be 'fgsm', 'pgd' or None, got {attack!r}")
    unknown = [c for c in corruptions if c not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"unknown corruption(s) {unknown}; choose from {sorted(CORRUPTIONS)}")
    return attack


def _predictors(model, attack: str | None, settings: Mapping[str, Any]) -> dict[str, Any]:
    """``{'clean', 'fgsm'?, 'pgd'?: jitted (variables, x, y, rng) -> predicted class (B,)}``; PGD
    also reports FGSM at the same eps, for comparison."""
    fgsm_settings = {k: settings[k] for k in ("eps", "norm", "normalization")}

    def logits_fn(v, x):
        return model.apply(v, x, train=False)

    def clean(v, x, y, rng):
        del y, rng
        return jnp.argmax(logits_fn(v, x), axis=-1)

    def fgsm_predict(v, x, y, rng):
        del rng
        adv = fgsm(lambda z: logits_fn(v, z), x, y, **fgsm_settings)
        return jnp.argmax(logits_fn(v, adv), axis=-1)

    def pgd_predict(v, x, y, rng):
        adv = pgd(lambda z: logits_fn(v, z), x, y, rng=rng, **settings)
        return jnp.argmax(logits_fn(v, adv), axis=-1)

    fns = {"clean": clean}
    if attack is not None:
        fns["fgsm"] = fgsm_predict
    if attack == "pgd":
        fns["pgd"] = pgd_predict
    return {name: jax.jit(fn) for name, fn in fns.items()}


def _corrupted(x, normalization: Normalization, corruptions: Sequence[str],
               severities: Sequence[int], seed: int):
    """Yields ``('name/severity', model input of the corrupted batch)``; corruptions are defined
    on [0, 1] pixels, so the batch goes to pixels, is corrupted, and comes back."""
    if not corruptions:
        return
    lo, hi = normalization.pixel_range
    pixels = np.clip(np.asarray(normalization.to_pixels(x)), lo, hi)
    unit = (pixels - lo) / (hi - lo)
    for c in corruptions:
        for s in severities:
            bad = corrupt(c, unit, s, seed=seed) * (hi - lo) + lo
            yield f"{c}/{s}", normalization.to_model(jnp.asarray(bad))


def _report(correct: Mapping[str, float], count: float, attack: str | None,
            settings: Mapping[str, Any], corruptions: Sequence[str],
            severities: Sequence[int]) -> dict[str, Any]:
    """The result dict of ``evaluate_robustness`` from the per-prediction correct counts."""
    result: dict[str, Any] = {
        "num_examples": int(count),
        "clean_top1": _accuracy(correct["clean"], count),
    }
    if attack is not None:
        eps, steps, step_size = settings["eps"], settings["steps"], settings["step_size"]
        is_pgd = attack == "pgd"
        result["attack"] = {
            "name": attack,
            "norm": settings["norm"],
            "eps": float(eps),
            "steps": int(steps) if is_pgd else 1,
            # pgd's default step: 2.5 eps / steps (Madry et al. 2018), as in attacks.pgd
            "step_size": float(2.5 * eps / steps if step_size is None else step_size)
            if is_pgd else float(eps),
            "random_start": bool(settings["random_start"]) if is_pgd else False,
        }
        result["fgsm_top1"] = _accuracy(correct["fgsm"], count)
        if is_pgd:
            result["pgd_top1"] = _accuracy(correct["pgd"], count)
    if corruptions:
        table = {}
        for c in corruptions:
            per = {str(s): _accuracy(correct[f"{c}/{s}"], count) for s in severities}
            per["mean"] = float(np.mean(list(per.values())))
            table[c] = per
        result["corruptions"] = table
        result["corruption_mean_top1"] = float(np.mean([t["mean"] for t in table.values()]))
    return result


def format_table(result: Mapping[str, Any]) -> str:
    """Markdown table of an ``evaluate_robustness`` result."""
    lines = ["| perturbation | setting | top-1 |", "|---|---|---|"]
    lines.append(f"| clean | - | {result['clean_top1']:.4f} |")
    if "attack" in result:
        a = result["attack"]
        lines.append(f"| fgsm | {a['norm']} eps={a['eps']:.4g} | {result['fgsm_top1']:.4f} |")
        if "pgd_top1" in result:
            setting = f"{a['norm']} eps={a['eps']:.4g} steps={a['steps']} step={a['step_size']:.3g}"
            lines.append(f"| pgd | {setting} | {result['pgd_top1']:.4f} |")
    for c, per in result.get("corruptions", {}).items():
        for s, acc in per.items():
            lines.append(f"| {c} | severity {s} | {acc:.4f} |")
    return "\n".join(lines)
