"""torchvision VGG state dicts -> ``models.vgg``: ``features.{i}`` convs (with BatchNorm at i + 1
in the ``_bn`` variants) in order become ``conv1``, ``conv2``, ... (``norm{k}``);
``classifier.0``/``.3``/``.6`` become ``fc1``/``fc2``/``head`` (``fc1``'s rows permuted from
PyTorch's (C, 7, 7) flatten order to jaxvision's (7, 7, C))."""

from __future__ import annotations

from jaxvision.convert.torch_mapper import StateDictMapper, classifier

__all__ = ["map_vgg"]


def map_vgg(m: StateDictMapper, overrides=None) -> int:
    convs = sorted(int(k.split(".")[1]) for k, v in m.sd.items()
                   if k.startswith("features.") and k.endswith(".weight") and v.ndim == 4)
    for k, i in enumerate(convs, 1):
        m.conv(f"conv{k}", f"features.{i}", bias=True)
        if m.has(f"features.{i + 1}.running_mean"):
            m.bn(f"norm{k}", f"features.{i + 1}")
    m.linear_after_flatten("fc1", "classifier.0", 7)  # after the adaptive 7x7 pool
    m.linear("fc2", "classifier.3")
    return classifier(m, "classifier.6")
