"""Building blocks (Flax Linen, NHWC): convolutions, pooling, norms, drop path, residual / MBConv
blocks, attention and transformer layers.

Each concept lives in its own module with an ``__all__``; this package re-exports them all.
"""

import importlib

_MODULES = (
    "lowering", "conv_cost", "tap_conv", "narrow_conv", "onednn_conv", "onednn_pool", "feature_levels", "conv", "pooling", "norm", "drop", "blocks", "dense", "attention", "transformer", "patch",
    "relative_attention", "remat",
)
__all__: list[str] = []
for _name in _MODULES:
    try:
        _mod = importlib.import_module(f"jaxvision.layers.{_name}")
    except ModuleNotFoundError as _e:  # pragma: no cover - only while a module is being written
        if _e.name != f"jaxvision.layers.{_name}":
            raise
        continue
    for _sym in getattr(_mod, "__all__", ()):
        globals()[_sym] = getattr(_mod, _sym)
        __all__.append(_sym)
