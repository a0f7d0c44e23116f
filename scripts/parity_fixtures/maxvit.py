"""Parity fixture builders: torchvision MaxViT and timm's TF-ported MaxViT (tiny widths, 3 stages,
partition 2 on a 32 px input: maps 8, 4, 2, so block and grid attention both mix tokens)."""

from __future__ import annotations

from scripts.parity_fixtures.randomize import randomize_

_OVERRIDES = dict(stem_width=8, embed_dims=(8, 16, 32), depths=(2, 1, 1), head_dim=4,
                  partition_size=2)


def _input():
    import torch

    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def maxvit_tiny():
    import torch
    from torchvision.models.maxvit import MaxVit

    kwargs = dict(input_size=(32, 32), stem_channels=8, partition_size=2, block_channels=[8, 16, 32],
                  block_layers=[2, 1, 1], head_dim=4, stochastic_depth_prob=0.2, num_classes=10)
    torch.manual_seed(0)
    return dict(model=randomize_(MaxVit(**kwargs)), input=_input(), source="torchvision",
                reference={"constructor": "torchvision.models.maxvit.MaxVit", "kwargs": kwargs},
                model_name="maxvit_t", overrides=dict(_OVERRIDES), num_classes=10)


def maxvit_tf_tiny():
    import dataclasses

    import torch
    from timm.models.maxxvit import MaxxVit, model_cfgs

    cfg = model_cfgs["maxvit_tiny_tf"]
    cfg = dataclasses.replace(
        cfg, embed_dim=(8, 16, 32), depths=(2, 1, 1), block_type=("M",) * 3, stem_width=8,
        head_hidden_size=32,
        transformer_cfg=dataclasses.replace(cfg.transformer_cfg, dim_head=4, window_size=(2, 2),
                                            grid_size=(2, 2)))
    torch.manual_seed(0)
    model = randomize_(MaxxVit(cfg, img_size=32, num_classes=10))
    return dict(model=model, input=_input(), source="timm",
                reference={"constructor": "timm.models.maxxvit.MaxxVit(model_cfgs['maxvit_tiny_tf'] "
                                          "with overrides)",
                           "kwargs": {"embed_dim": [8, 16, 32], "depths": [2, 1, 1], "stem_width": 8,
                                      "head_hidden_size": 32, "dim_head": 4, "window_size": 2,
                                      "grid_size": 2, "img_size": 32, "num_classes": 10}},
                model_name="maxvit_tiny_tf_224",
                overrides=dict(_OVERRIDES, layout="tf"), num_classes=10)
