"""Parity fixture builders: torchvision EfficientNetV2 and timm's TF port (tiny widths, one or two
blocks per stage, the six-stage layout of efficientnet_v2_s)."""

from __future__ import annotations

from scripts.parity_fixtures.randomize import randomize_

# (fused, expand, kernel, stride, in, out, repeats): efficientnet_v2_s's layout at tiny width.
_TINY = [(True, 1, 3, 1, 8, 8, 2), (True, 4, 3, 2, 8, 8, 1), (True, 4, 3, 2, 8, 16, 1),
         (False, 4, 3, 2, 16, 16, 2), (False, 6, 3, 1, 16, 24, 1), (False, 6, 3, 2, 24, 32, 1)]
_OVERRIDES = dict(
    stem_features=8, head_features=32,
    stages=[dict(expand_ratio=e, kernel_size=k, strides=s, features=o, repeats=r,
                 se_ratio=0.0 if f else 0.25, fused=f) for f, e, k, s, _, o, r in _TINY])


def efficientnet_v2_tiny():
    import functools

    import torch
    from torchvision.models.efficientnet import EfficientNet, FusedMBConvConfig, MBConvConfig

    setting = [(FusedMBConvConfig if f else MBConvConfig)(e, k, s, i, o, r)
               for f, e, k, s, i, o, r in _TINY]
    torch.manual_seed(0)
    model = randomize_(EfficientNet(setting, dropout=0.2, num_classes=10, last_channel=32,
                                    norm_layer=functools.partial(torch.nn.BatchNorm2d, eps=1e-3)))
    return dict(
        model=model,
        input=torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)),
        source="torchvision",
        reference={"constructor": "torchvision.models.efficientnet.EfficientNet",
                   "kwargs": {"inverted_residual_setting": [list(t) for t in _TINY],
                              "last_channel": 32, "norm_layer": "BatchNorm2d(eps=1e-3)",
                              "num_classes": 10}},
        model_name="efficientnet_v2_s",
        overrides=dict(_OVERRIDES),
        num_classes=10,
    )


def tf_efficientnetv2_tiny():
    import functools

    import timm
    import torch

    arch = [["cn_r2_k3_s1_e1_c8_skip"], ["er_r1_k3_s2_e4_c8"], ["er_r1_k3_s2_e4_c16"],
            ["ir_r2_k3_s2_e4_c16_se0.25"], ["ir_r1_k3_s1_e6_c24_se0.25"], ["ir_r1_k3_s2_e6_c32_se0.25"]]
    from timm.models.efficientnet import EfficientNet, decode_arch_def, round_channels

    torch.manual_seed(0)
    model = EfficientNet(decode_arch_def(arch), num_classes=10, stem_size=8, num_features=32,
                         round_chs_fn=round_channels, pad_type="same", act_layer=torch.nn.SiLU,
                         norm_layer=functools.partial(torch.nn.BatchNorm2d, eps=1e-3))
    model = randomize_(model)
    return dict(
        model=model,
        input=torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)),
        source="timm",
        reference={"constructor": "timm.models.efficientnet.EfficientNet (tf_efficientnetv2_s "
                                  "settings: pad_type='same', bn_eps=1e-3, SiLU)",
                   "kwargs": {"arch_def": arch, "stem_size": 8, "num_features": 32,
                              "num_classes": 10}, "version": timm.__version__},
        model_name="efficientnet_v2_s",
        overrides=dict(_OVERRIDES, padding="SAME"),
        num_classes=10,
    )
