"""torchvision ``mobilenet_v3_large``/``_small`` state dicts -> ``models.mobilenet_v3``.

``features.0`` (stem conv + BN), ``features.{k}.block.{i}``: [expand], depthwise, [SE ``fc1``/
``fc2``], project (each ``Conv2dNormActivation``: ``.0`` conv, ``.1`` BN), ``features.{last}``
(the 1x1 head conv), ``classifier.0`` (-> ``pre_logits``) and ``classifier.3`` (-> ``head``).
Other widths than 1.0: pass the ``width_multiplier`` model option.
"""

from __future__ import annotations

from jaxvision.convert.torch_mapper import StateDictMapper, classifier, conv_norm, squeeze_excite

__all__ = ["map_mobilenet_v3"]


def map_mobilenet_v3(m: StateDictMapper, overrides=None) -> int:
    conv_norm(m, "stem", "features.0.0", "features.0.1")
    k = 1
    while m.has(f"features.{k}.block.0.0.weight"):
        src, dst = f"features.{k}.block", f"block{k}"
        parts = ["dw", "project"]
        if m.sd[f"{src}.0.0.weight"].shape[1] != 1:  # not depthwise: a 1x1 expand comes first
            parts.insert(0, "expand")
        i = 0
        for part in parts:
            if part == "project" and m.has(f"{src}.{i}.fc1.weight"):
                squeeze_excite(m, dst, f"{src}.{i}.fc1", f"{src}.{i}.fc2")
                i += 1
            conv_norm(m, f"{dst}/{part}", f"{src}.{i}.0", f"{src}.{i}.1")
            i += 1
        k += 1
    conv_norm(m, "head_conv", f"features.{k}.0", f"features.{k}.1")
    m.linear("pre_logits", "classifier.0")
    return classifier(m, "classifier.3")
