"""Parity fixture builders: torchvision Swin Transformer v1 (tiny width, window 3 on a 32 px
input so that padding to the window, the shifted-window mask and the no-shift case all occur)."""

from __future__ import annotations

from scripts.parity_fixtures.randomize import randomize_


def swin_tiny():
    import torch
    from torchvision.models.swin_transformer import SwinTransformer

    kwargs = dict(patch_size=[4, 4], embed_dim=8, depths=[2, 2, 1], num_heads=[1, 2, 2],
                  window_size=[3, 3], num_classes=10)
    torch.manual_seed(0)
    model = randomize_(SwinTransformer(**kwargs))
    return dict(
        model=model,
        input=torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)),
        source="torchvision",
        reference={"constructor": "torchvision.models.swin_transformer.SwinTransformer",
                   "kwargs": kwargs},
        model_name="swin_t",
        overrides=dict(embed_dim=8, depths=(2, 2, 1), num_heads=(1, 2, 2), window_size=3),
        num_classes=10,
    )
