"""Parity fixture builder: timm CoAtNet (coatnet_0's configuration at tiny widths, C-C-T-T with
one or two blocks per stage, 64 px input: Transformer stages attend over 4x4 and 2x2 maps)."""

from __future__ import annotations

from scripts.parity_fixtures.randomize import randomize_


def coatnet_tiny():
    import dataclasses

    import torch
    from timm.models.maxxvit import MaxxVit, model_cfgs

    cfg = model_cfgs["coatnet_0"]
    cfg = dataclasses.replace(cfg, embed_dim=(8, 16, 32, 64), depths=(1, 2, 2, 1), stem_width=8,
                              head_hidden_size=64,
                              transformer_cfg=dataclasses.replace(cfg.transformer_cfg, dim_head=8))
    torch.manual_seed(0)
    model = randomize_(MaxxVit(cfg, img_size=64, num_classes=10))
    return dict(
        model=model,
        input=torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)),
        source="timm",
        reference={"constructor": "timm.models.maxxvit.MaxxVit(model_cfgs['coatnet_0'] with overrides)",
                   "kwargs": {"embed_dim": [8, 16, 32, 64], "depths": [1, 2, 2, 1], "stem_width": 8,
                              "head_hidden_size": 64, "dim_head": 8, "img_size": 64,
                              "num_classes": 10}},
        model_name="coatnet_0",
        overrides=dict(stem_width=8, embed_dims=(8, 16, 32, 64), depths=(1, 2, 2, 1), head_dim=8),
        num_classes=10,
    )
