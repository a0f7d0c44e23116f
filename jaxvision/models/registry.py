"""Model registry: every model is registered by name and built from plain values.

A builder is a function ``builder(num_classes: int, dtype, param_dtype, **overrides) -> nn.Module``.
The returned Linen module follows the model contract (see ``shared/DESIGN.md``):

* ``variables = model.init(rng, x, train=False)`` with ``x`` NHWC float, shape (N, H, W, C);
* ``logits = model.apply(variables, x, train=False)`` -> (N, num_classes) in the compute dtype;
* in training, ``model.apply(variables, x, train=True, rngs={'dropout': r1, 'drop_path': r2},
  mutable=['batch_stats'])`` -> (logits, {'batch_stats': ...});
* ``num_classes=0`` builds the model without its classifier: it returns pre-logit features (N, D);
* the classifier is a ``nn.Dense`` named ``head`` (fine-tuning re-initializes it by that name);
* ``features_only=True`` wraps the head-less model in ``features.FeatureExtractor``: apply
  returns the list of NHWC feature maps of ``out_indices`` (``model_info(name)['feature_info']``
  gives each level's stride and channels).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxvision.models import input_check
from jaxvision.models.features import FeatureExtractor, level_info


class ModelOptionError(TypeError, ValueError):
    """``models.create`` got an option the model does not take (a TypeError, as for any unknown
    keyword, and a ValueError, so command lines report it as bad input)."""


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about a model before building it."""

    name: str
    family: str
    builder: Callable[..., nn.Module]
    default_resolution: int
    in_channels: int = 3
    num_classes: int = 1000
    description: str = ""
    # True: the model refuses inputs other than its ``image_size`` option (CoAtNet's relative
    # position tables), so training passes it the data's size (config.resolve_model_image_size).
    fixed_input_size: bool = False


_REGISTRY: dict[str, ModelSpec] = {}


def register(
    name: str,
    *,
    family: str,
    default_resolution: int,
    in_channels: int = 3,
    num_classes: int = 1000,
    description: str = "",
    fixed_input_size: bool = False,
):
    """Decorator registering ``builder(num_classes, dtype, param_dtype, **overrides)``."""

    def wrap(builder):
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(
            name=name,
            family=family,
            builder=builder,
            default_resolution=default_resolution,
            in_channels=in_channels,
            num_classes=num_classes,
            description=description or (builder.__doc__ or "").strip().split("\n")[0],
            fixed_input_size=fixed_input_size,
        )
        return builder

    return wrap


def _unknown(name: str) -> KeyError:
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return KeyError(
        f"Unknown model {name!r}.{hint} Call jaxvision.models.list_models() for the "
        f"{len(_REGISTRY)} registered names."
    )


def get_spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        raise _unknown(name)
    return _REGISTRY[name]


def list_models(family: str | None = None) -> list[str]:
    """Registered model names (optionally of one family), sorted."""
    return sorted(n for n, s in _REGISTRY.items() if family is None or s.family == family)


def list_families() -> list[str]:
    return sorted({s.family for s in _REGISTRY.values()})


def _as_dtype(dtype: Any):
    if isinstance(dtype, str):
        try:
            return jnp.dtype(dtype)
        except TypeError as e:
            raise ValueError(f"unknown dtype {dtype!r}: use 'float32', 'bfloat16' or 'float16'") from e
    return dtype


def create(
    name: str,
    num_classes: int | None = None,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
    *,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    **overrides,
) -> nn.Module:
    """Build a registered model.

    Args:
      name: a name from ``list_models()``.
      num_classes: classifier width; ``None`` uses the model's default (1000 for ImageNet
        models, 10 for LeNet-5); ``0`` returns a feature extractor (pre-logits).
      dtype: compute dtype (e.g. ``jnp.bfloat16``); parameters stay in ``param_dtype``.
      features_only: return the multi-scale feature maps instead of logits (timm's convention):
        apply gives a list of (N, H/stride_i, W/stride_i, C_i) maps, one per ``out_indices``.
      out_indices: levels to return with ``features_only`` (default: all; negative counts from
        the last); ``model_info(name)['feature_info']`` lists the levels.
      **overrides: family-specific options (e.g. ``drop_rate``, ``drop_path_rate``, ``width``).

    Returns:
      A Flax Linen module; see this module's docstring for its contract.

    Raises:
      KeyError: unknown name; TypeError: an option the model does not take; ValueError: bad
      ``num_classes``/``out_indices`` (out-of-range indices are reported when first traced).
    """
    if out_indices is not None and not features_only:
        raise ValueError("out_indices selects feature levels: pass it with features_only=True")
    if features_only:
        if num_classes:
            raise ValueError(f"features_only=True builds the model without its head; got "
                             f"num_classes={num_classes} (leave it out)")
        model = create(name, 0, dtype, param_dtype, **overrides)
        indices = None if out_indices is None else tuple(int(i) for i in out_indices)
        return FeatureExtractor(model, indices)
    spec = get_spec(name)
    if num_classes is None:
        num_classes = spec.num_classes
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0, got {num_classes}")
    accepted = _accepted_overrides(spec.builder)
    unknown = sorted(set(overrides) - accepted)
    if unknown:
        hints = [
            f"{k!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, accepted, 1)) else repr(k)
            for k in unknown
        ]
        raise ModelOptionError(
            f"Model {name!r} does not take option(s) {', '.join(hints)}. "
            f"It takes: {', '.join(sorted(accepted)) or 'no options'}."
        )
    module = spec.builder(
        num_classes=num_classes, dtype=_as_dtype(dtype), param_dtype=_as_dtype(param_dtype), **overrides
    )
    return _with_input_check(module)


def _with_input_check(module: nn.Module) -> nn.Module:
    """The same module as an instance of ``input_check.checked_class``: NCHW, integer or
    wrong-channel input is one clear error instead of a silently wrong model."""
    fields = {f.name: getattr(module, f.name) for f in dataclasses.fields(module)
              if f.init and f.name not in ("parent", "name")}
    return input_check.checked_class(type(module))(**fields)


def model_options(name: str) -> frozenset[str]:
    """The option names ``create(name, ..., **options)`` accepts (e.g. ``drop_rate``); KeyError
    for an unknown name."""
    return frozenset(_accepted_overrides(get_spec(name).builder))


def _accepted_overrides(builder) -> set[str]:
    params = inspect.signature(builder).parameters
    return {n for n in params if n not in ("num_classes", "dtype", "param_dtype")}


def count_params(params) -> int:
    """Number of scalars in a parameter pytree (pass ``variables['params']``)."""
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(params)))


def input_shape(name: str, resolution: int | None = None, batch: int = 1) -> tuple[int, int, int, int]:
    spec = get_spec(name)
    r = resolution or spec.default_resolution
    return (batch, r, r, spec.in_channels)


def abstract_variables(model: nn.Module, shape) -> Any:
    """Variable shapes of ``model`` for an input of ``shape`` without computing anything."""
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    return jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)


@functools.cache
def _param_count(name: str, num_classes: int | None) -> int:
    model = create(name, num_classes=num_classes)
    variables = abstract_variables(model, input_shape(name))
    return count_params(variables["params"])


@functools.cache
def _feature_info(name: str) -> tuple[dict[str, Any], ...]:
    return tuple(level_info(create(name, num_classes=0), input_shape(name)))


def feature_info(name: str) -> list[dict[str, Any]]:
    """The feature levels of ``create(name, features_only=True)`` at the default resolution:
    per level ``index``, ``stride`` (= timm's ``reduction``) and ``channels`` (= ``num_chs``)."""
    return [dict(level) for level in _feature_info(name)]


def model_info(name: str, num_classes: int | None = None) -> dict[str, Any]:
    """Facts about a model: family, default resolution, input channels, default class count,
    the trainable parameter count (the ``params`` collection) at that class count, and the
    ``feature_info`` of its levels (see ``feature_info``)."""
    spec = get_spec(name)
    return {
        "name": spec.name,
        "family": spec.family,
        "default_resolution": spec.default_resolution,
        "in_channels": spec.in_channels,
        "num_classes": spec.num_classes if num_classes is None else num_classes,
        "params": _param_count(name, num_classes),
        "description": spec.description,
        "feature_info": feature_info(name),
    }
