"""What every converter produces, and the checks that it fits the jaxvision model exactly."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

__all__ = ["Converted", "ParamWriter", "build_model"]


@dataclasses.dataclass
class Converted:
    """A source checkpoint mapped onto a registered jaxvision model.

    model_name / model_overrides: ``models.create(model_name, num_classes, **model_overrides)``
      builds the model these variables belong to (e.g. ``bn_epsilon`` of the source).
    variables: {'params', 'batch_stats'} nested dicts of float32 numpy arrays.
    mean / std: per-channel input normalization (pixels in [0, 1]) under which the jaxvision model
      sees exactly the tensor the source model saw after its own preprocessing.
    image_shape: (H, W, C) of the source model's input (its default resolution when unknown).
    notes: conventions handled or caveats, for the user.
    """

    model_name: str
    variables: dict[str, Any]
    num_classes: int
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    model_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)

    def create_model(self, dtype=jnp.float32):
        return build_model(self.model_name, self.num_classes, self.model_overrides, dtype)

    def normalize(self, pixels01: np.ndarray) -> np.ndarray:
        """Pixels in [0, 1] (N, H, W, C) -> the model input, as the data pipeline would make it."""
        return (np.asarray(pixels01, np.float32) - np.asarray(self.mean, np.float32)) / np.asarray(
            self.std, np.float32
        )


def build_model(name: str, num_classes: int, overrides: dict[str, Any], dtype=jnp.float32):
    from jaxvision import models

    return models.create(name, num_classes=num_classes, dtype=dtype, **overrides)


class ParamWriter:
    """Collects 'a/b/c' -> array for the params and batch_stats collections, then checks the
    result against the model's own variable shapes (nothing missing, nothing extra, same shapes)."""

    def __init__(self):
        self.params: dict[str, np.ndarray] = {}
        self.stats: dict[str, np.ndarray] = {}

    def put(self, path: str, value, collection: str = "params") -> None:
        target = self.params if collection == "params" else self.stats
        if path in target:
            raise ValueError(f"converter bug: {collection}/{path} written twice")
        # A copy: converted arrays never alias the source (a torch tensor, a Keras variable).
        target[path] = np.array(value, np.float32, copy=True)

    def batchnorm(self, path: str, gamma, beta, mean, var, fold_bias=None) -> None:
        """BatchNorm (scale, bias; mean, var); a bias of the preceding conv folds into the mean:
        BN(xW + b) = gamma (xW - (mean - b)) / sqrt(var + eps) + beta, exactly."""
        mean = np.asarray(mean, np.float64)
        if fold_bias is not None:
            mean = mean - np.asarray(fold_bias, np.float64)
        self.put(f"{path}/scale", gamma)
        self.put(f"{path}/bias", beta)
        self.put(f"{path}/mean", mean, "batch_stats")
        self.put(f"{path}/var", var, "batch_stats")

    def variables(self) -> dict[str, Any]:
        return {
            "params": traverse_util.unflatten_dict(self.params, sep="/"),
            "batch_stats": traverse_util.unflatten_dict(self.stats, sep="/"),
        }

    def check_against(self, model, image_shape) -> None:
        from jaxvision import models

        want = models.abstract_variables(model, (1, *image_shape))
        problems = []
        for col, got in (("params", self.params), ("batch_stats", self.stats)):
            expected = traverse_util.flatten_dict(dict(want.get(col, {})), sep="/")
            for k, v in expected.items():
                if k not in got:
                    problems.append(f"missing {col}/{k} {tuple(v.shape)}")
                elif tuple(got[k].shape) != tuple(v.shape):
                    problems.append(
                        f"shape of {col}/{k}: source {got[k].shape}, model {tuple(v.shape)}"
                    )
            problems += [
                f"unexpected {col}/{k} (not in the model)" for k in got if k not in expected
            ]
        if problems:
            shown = "; ".join(problems[:12]) + (
                f"; ... {len(problems) - 12} more" if len(problems) > 12 else ""
            )
            raise ValueError(
                f"converted weights do not fit jaxvision model {model.__class__.__name__}: {shown}. "
                "Is the source the architecture named by --model (and its variant/width)?"
            )
