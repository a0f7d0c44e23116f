"""timm FastViT at tiny widths: RepMixer stages, then RepCPE + an attention stage (as SA12),
one block per stage, train-time (un-reparameterized) form."""

from __future__ import annotations

import functools

import torch
from timm.models import fastvit as timm_fastvit

from .common import NUM_CLASSES, Fixture


def fastvit_timm() -> Fixture:
    dims, depths, mixers = (8, 16, 16, 32), (1, 1, 1, 1), ("repmixer",) * 3 + ("attention",)
    cpe = functools.partial(timm_fastvit.RepConditionalPosEnc, spatial_shape=(7, 7))
    m = timm_fastvit.FastVit(layers=depths, embed_dims=dims, mlp_ratios=(3,) * 4,
                             token_mixers=mixers, pos_embs=(None, None, None, cpe),
                             num_classes=NUM_CLASSES)
    with torch.no_grad():  # layer scales start at 1e-5: make every branch count
        for name, p in m.named_parameters():
            if name.endswith("gamma"):
                p.copy_(0.5 + torch.rand(p.shape))
    return Fixture(m, "timm", f"timm.models.fastvit.FastVit(layers={depths}, embed_dims={dims}, "
                   f"mlp_ratios=(3,)*4, token_mixers={mixers}, pos_embs=(None, None, None, "
                   "RepConditionalPosEnc 7x7), num_classes=10), layer scales U(0.5, 1.5)",
                   "fastvit_sa12", {"depths": list(depths), "embed_dims": list(dims),
                                    "mlp_ratio": 3.0, "token_mixers": list(mixers)}, 64)
