"""torchvision DenseNet state dicts -> ``models.densenet``.

Names: ``features.conv0``/``norm0``, ``features.denseblock{b}.denselayer{i}.{norm1,conv1,norm2,
conv2}``, ``features.transition{b}.{norm,conv}``, ``features.norm5``, ``classifier``. The
published checkpoints spell the dense layers' modules ``norm.1``/``conv.2`` (torchvision renames
them when loading); both spellings are accepted.
"""

from __future__ import annotations

import re

from jaxvision.convert.torch_mapper import StateDictMapper, classifier

__all__ = ["map_densenet"]

_OLD_NAMES = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def map_densenet(m: StateDictMapper, overrides=None) -> int:
    for key in [k for k in m.sd if _OLD_NAMES.search(k)]:
        m.sd[_OLD_NAMES.sub(r"\1\2", key)] = m.sd.pop(key)
    m.conv("conv0", "features.conv0")
    m.bn("norm0", "features.norm0")
    b = 1
    while m.has(f"features.denseblock{b}.denselayer1.conv1.weight"):
        i = 1
        while m.has(f"features.denseblock{b}.denselayer{i}.conv1.weight"):
            src, dst = f"features.denseblock{b}.denselayer{i}", f"block{b}_layer{i}"
            for k in (1, 2):
                m.bn(f"{dst}/norm{k}", f"{src}.norm{k}")
                m.conv(f"{dst}/conv{k}", f"{src}.conv{k}")
            i += 1
        if m.has(f"features.transition{b}.conv.weight"):
            m.bn(f"transition{b}_norm", f"features.transition{b}.norm")
            m.conv(f"transition{b}_conv", f"features.transition{b}.conv")
        b += 1
    m.bn("norm_final", "features.norm5")
    return classifier(m, "classifier")
