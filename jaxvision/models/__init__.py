"""Model zoo: ``create(name, num_classes, dtype, **overrides)``, ``list_models()``, ``model_info(name)``.

Importing this package registers every family; each family lives in its own module.
"""

import importlib

from jaxvision.models.registry import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    abstract_variables,
    count_params,
    create,
    feature_info,
    get_spec,
    input_shape,
    list_families,
    list_models,
    model_info,
    register,
)

# One module per family; each registers its models on import. A family that is not written yet
# is skipped so that the rest of the zoo stays usable while it is.
_FAMILIES = (
    "lenet",
    "alexnet",
    "vgg",
    "googlenet",
    "resnet",
    "densenet",
    "mobilenet_v2",
    "mobilenet_v3",
    "efficientnet",
    "vit",
    "hybrid",
    "mobilevit",
    "fastvit",
    "swin",
    "efficientnet_v2",
    "coatnet",
    "maxvit",
    "convnext",
    "mobilevit_v2",
    "efficientformer",
)
for _family in _FAMILIES:
    try:
        importlib.import_module(f"jaxvision.models.{_family}")
    except ModuleNotFoundError as _e:  # pragma: no cover - only while a family is missing
        if _e.name != f"jaxvision.models.{_family}":
            raise

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "abstract_variables",
    "count_params",
    "create",
    "feature_info",
    "get_spec",
    "input_shape",
    "list_families",
    "list_models",
    "model_info",
    "register",
]
