"""torchvision GoogLeNet state dicts -> ``models.googlenet``.

``conv1..3`` and ``inception{3a..5b}.branch{1..4}`` (``BasicConv2d``: ``conv`` + ``bn``; branches
2 and 3 are ``Sequential`` of two, branch 4 is max pool + ``BasicConv2d`` at index 1), ``fc``.
The auxiliary classifiers (``aux1``/``aux2``, training only) are not part of the model and are
skipped. torchvision's pretrained GoogLeNet re-normalizes its input (``transform_input``) to
(x - 0.5) / 0.5 of the pixels, hence the converter's default mean/std of 0.5.
"""

from __future__ import annotations

from jaxvision.convert.torch_mapper import StateDictMapper, classifier, conv_norm

__all__ = ["map_googlenet"]

_BLOCKS = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")


def map_googlenet(m: StateDictMapper, overrides=None) -> int:
    m.used.update(k for k in m.sd if k.startswith(("aux1.", "aux2.")))
    for k in (1, 2, 3):
        conv_norm(m, f"conv{k}", f"conv{k}.conv", f"conv{k}.bn")
    for b in _BLOCKS:
        src, dst = f"inception{b}", f"inception{b}"
        conv_norm(m, f"{dst}/branch1", f"{src}.branch1.conv", f"{src}.branch1.bn")
        for branch in (2, 3):
            conv_norm(m, f"{dst}/branch{branch}_reduce", f"{src}.branch{branch}.0.conv",
                      f"{src}.branch{branch}.0.bn")
            conv_norm(m, f"{dst}/branch{branch}", f"{src}.branch{branch}.1.conv",
                      f"{src}.branch{branch}.1.bn")
        conv_norm(m, f"{dst}/branch4", f"{src}.branch4.1.conv", f"{src}.branch4.1.bn")
    return classifier(m, "fc")
