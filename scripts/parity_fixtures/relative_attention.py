"""Tiny torchvision / timm models with relative-position attention (Swin, MaxViT, CoAtNet) and
EfficientNetV2, for ``scripts/make_parity_fixtures.py``."""

from __future__ import annotations

import dataclasses
import functools

import torch
from timm.models import efficientnet as timm_efficientnet
from timm.models.maxxvit import MaxxVit, model_cfgs
from torchvision.models.efficientnet import EfficientNet, FusedMBConvConfig, MBConvConfig
from torchvision.models.maxvit import MaxVit
from torchvision.models.swin_transformer import SwinTransformer

from .common import NUM_CLASSES, Fixture


def randomize_norms_and_tables(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """LayerNorm scales 1 + 0.2 N(0, 1) and relative position bias tables N(0, 1) (fresh ones
    are 1 and ~0.02: a transposed table or a skipped norm scale would hide)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "relative_position_bias_table" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            elif name.endswith("weight") and p.ndim == 1:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
    return model


def swin() -> Fixture:
    """Window 3 on a 32 px input: the 8x8 map is padded to 9x9 and shifted (mask), the 4x4 one
    padded to 6x6 and shifted, the 2x2 one fits one window (no shift)."""
    kwargs = dict(patch_size=[4, 4], embed_dim=8, depths=[2, 2, 1], num_heads=[1, 2, 2],
                  window_size=[3, 3], num_classes=NUM_CLASSES)
    model = randomize_norms_and_tables(SwinTransformer(**kwargs))
    return Fixture(model, "torchvision", f"torchvision.models.swin_transformer.SwinTransformer(**{kwargs})",
                   "swin_t", dict(embed_dim=8, depths=(2, 2, 1), num_heads=(1, 2, 2), window_size=3), 32)


# (fused, expand, kernel, stride, in, out, repeats): efficientnet_v2_s's six-stage layout, tiny.
_V2_TINY = [(True, 1, 3, 1, 8, 8, 2), (True, 4, 3, 2, 8, 8, 1), (True, 4, 3, 2, 8, 16, 1),
            (False, 4, 3, 2, 16, 16, 2), (False, 6, 3, 1, 16, 24, 1), (False, 6, 3, 2, 24, 32, 1)]
_V2_OVERRIDES = dict(stem_features=8, head_features=32, stages=[
    dict(expand_ratio=e, kernel_size=k, strides=s, features=o, repeats=r, se_ratio=0.0 if f else 0.25,
         fused=f) for f, e, k, s, _, o, r in _V2_TINY])


def efficientnet_v2() -> Fixture:
    setting = [(FusedMBConvConfig if f else MBConvConfig)(e, k, s, i, o, r) for f, e, k, s, i, o, r in _V2_TINY]
    model = EfficientNet(setting, dropout=0.2, num_classes=NUM_CLASSES, last_channel=32,
                         norm_layer=functools.partial(torch.nn.BatchNorm2d, eps=1e-3))
    return Fixture(model, "torchvision", f"torchvision.models.efficientnet.EfficientNet({_V2_TINY} as "
                   "(Fused)MBConvConfig, last_channel=32, norm_layer=BatchNorm2d(eps=1e-3), num_classes=10)",
                   "efficientnet_v2_s", dict(_V2_OVERRIDES), 32)


def tf_efficientnetv2_timm() -> Fixture:
    """timm's ``_gen_efficientnetv2_s`` with the tf_ settings (pad_type 'same', bn_eps 1e-3)."""
    arch = [["cn_r2_k3_s1_e1_c8_skip"], ["er_r1_k3_s2_e4_c8"], ["er_r1_k3_s2_e4_c16"],
            ["ir_r2_k3_s2_e4_c16_se0.25"], ["ir_r1_k3_s1_e6_c24_se0.25"], ["ir_r1_k3_s2_e6_c32_se0.25"]]
    model = timm_efficientnet.EfficientNet(
        timm_efficientnet.decode_arch_def(arch), num_classes=NUM_CLASSES, stem_size=8, num_features=32,
        round_chs_fn=timm_efficientnet.round_channels, pad_type="same", act_layer=torch.nn.SiLU,
        norm_layer=functools.partial(torch.nn.BatchNorm2d, eps=1e-3))
    return Fixture(model, "timm", f"timm.models.efficientnet.EfficientNet(decode_arch_def({arch}), "
                   "stem_size=8, num_features=32, pad_type='same', bn eps 1e-3, SiLU, num_classes=10)",
                   "efficientnet_v2_s", dict(_V2_OVERRIDES), 32)


_MAXVIT_OVERRIDES = dict(stem_width=8, embed_dims=(8, 16, 32), depths=(2, 1, 1), head_dim=4,
                         partition_size=2)


def maxvit() -> Fixture:
    """Three stages, partition 2 on 32 px: maps 8, 4, 2, so block and grid attention both mix."""
    kwargs = dict(input_size=(32, 32), stem_channels=8, partition_size=2, block_channels=[8, 16, 32],
                  block_layers=[2, 1, 1], head_dim=4, stochastic_depth_prob=0.2, num_classes=NUM_CLASSES)
    model = randomize_norms_and_tables(MaxVit(**kwargs))
    return Fixture(model, "torchvision", f"torchvision.models.maxvit.MaxVit(**{kwargs})", "maxvit_t",
                   dict(_MAXVIT_OVERRIDES), 32)


def maxvit_tf_timm() -> Fixture:
    cfg = model_cfgs["maxvit_tiny_tf"]
    cfg = dataclasses.replace(
        cfg, embed_dim=(8, 16, 32), depths=(2, 1, 1), block_type=("M",) * 3, stem_width=8,
        head_hidden_size=32,
        transformer_cfg=dataclasses.replace(cfg.transformer_cfg, dim_head=4, window_size=(2, 2),
                                            grid_size=(2, 2)))
    model = randomize_norms_and_tables(MaxxVit(cfg, img_size=32, num_classes=NUM_CLASSES))
    return Fixture(model, "timm", "timm.models.maxxvit.MaxxVit(model_cfgs['maxvit_tiny_tf'] with "
                   "embed_dim=(8, 16, 32), depths=(2, 1, 1), stem_width=8, head_hidden_size=32, dim_head=4, "
                   "window/grid 2, img_size=32, num_classes=10)",
                   "maxvit_tiny_tf_224", dict(_MAXVIT_OVERRIDES, layout="tf"), 32)


def coatnet_timm() -> Fixture:
    """coatnet_0's C-C-T-T configuration at 64 px: Transformer stages attend over 4x4 and 2x2."""
    cfg = model_cfgs["coatnet_0"]
    cfg = dataclasses.replace(cfg, embed_dim=(8, 16, 32, 64), depths=(1, 2, 2, 1), stem_width=8,
                              head_hidden_size=64,
                              transformer_cfg=dataclasses.replace(cfg.transformer_cfg, dim_head=8))
    model = randomize_norms_and_tables(MaxxVit(cfg, img_size=64, num_classes=NUM_CLASSES))
    return Fixture(model, "timm", "timm.models.maxxvit.MaxxVit(model_cfgs['coatnet_0'] with "
                   "embed_dim=(8, 16, 32, 64), depths=(1, 2, 2, 1), stem_width=8, head_hidden_size=64, "
                   "dim_head=8, img_size=64, num_classes=10)", "coatnet_0",
                   dict(stem_width=8, embed_dims=(8, 16, 32, 64), depths=(1, 2, 2, 1), head_dim=8,
                        image_size=64), 64)
