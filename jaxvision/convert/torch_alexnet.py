"""torchvision AlexNet state dicts -> ``models.alexnet``: ``features.{0,3,6,8,10}`` ->
``conv1..5``, ``classifier.1``/``.4``/``.6`` -> ``fc1``/``fc2``/``head`` (``fc1``'s rows permuted from
PyTorch's (C, 6, 6) flatten order to jaxvision's (6, 6, C))."""

from __future__ import annotations

from jaxvision.convert.torch_mapper import StateDictMapper, classifier

__all__ = ["map_alexnet"]


def map_alexnet(m: StateDictMapper, overrides=None) -> int:
    for k, i in enumerate((0, 3, 6, 8, 10), 1):
        m.conv(f"conv{k}", f"features.{i}", bias=True)
    m.linear_after_flatten("fc1", "classifier.1", 6)  # after the adaptive 6x6 pool
    m.linear("fc2", "classifier.4")
    return classifier(m, "classifier.6")
