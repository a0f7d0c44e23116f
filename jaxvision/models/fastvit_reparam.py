"""Structural reparameterization of FastViT (Vasu et al. 2023; RepVGG, Ding et al. 2021): the
train-time form's parallel conv+BN branches, BatchNorm identities, RepMixers and RepCPE fold
into single convolutions with bias, giving ``models.create(name, inference_mode=True)``'s
variables with the same eval-mode logits (timm ``reparameterize_model``).

Folds (kernels in Flax layout (kh, kw, C_in / groups, C_out)):

* conv + BN: ``W * g / s``, ``b - m * g / s`` with ``s = sqrt(var + eps)`` (per output channel);
* BN alone (identity branch): the same on an identity kernel (1 at the centre tap, input channel
  ``o mod C_in/groups`` for output ``o``);
* 1x1 / 3x3 branches of a kxk block: zero-padded to kxk and summed;
* RepMixer ``x + g * (mixer(x) - norm(x))``: ``I + g * (W_mixer - W_norm)``, ``g * (b_mixer - b_norm)``;
* RepCPE ``x + dwconv(x)``: identity added to the kernel's centre.

BatchNorm layers of the ConvMlps and attention blocks stay (timm leaves them too).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

__all__ = ["reparameterize"]

_BN_EPS = 1e-5  # timm's BatchNorm2d default, as models.fastvit


def reparameterize(variables: dict[str, Any], epsilon: float = _BN_EPS) -> dict[str, Any]:
    """Train-form FastViT variables ({'params', 'batch_stats'}) -> the inference form's
    ({'params', 'batch_stats'}), float32 numpy arrays. Raises ValueError on variables that are
    not a train-form FastViT's."""
    params, stats = variables["params"], variables.get("batch_stats", {})
    out_p: dict[str, Any] = {}
    out_s: dict[str, Any] = {}
    for name, sub in params.items():
        bs = stats.get(name, {})
        if re.fullmatch(r"stage\d+_pos_emb", name):
            out_p[name] = _fold_cpe(sub)
        elif _is_mobileone(sub):
            out_p[name] = _fold_mobileone(sub, bs, epsilon)
        elif "large_conv" in sub:  # patch embedding
            out_p[name], pw_stats = _fold_patch_embed(sub, bs, epsilon)
            out_s.update({name: pw_stats} if pw_stats else {})
        elif "token_mixer" in sub or "mlp" in sub:  # a block
            out_p[name], out_s[name] = _fold_block(sub, bs, epsilon)
        elif name == "head":
            out_p[name] = _np(sub)
        else:
            raise ValueError(f"{name!r} is not part of a train-form FastViT (reparameterized twice?)")
    return {"params": out_p, "batch_stats": out_s}


def _np(tree):
    return {k: _np(v) if isinstance(v, dict) else np.asarray(v, np.float32) for k, v in tree.items()}


def _is_mobileone(p) -> bool:
    return any(k in p for k in ("identity", "conv_scale", "conv_kxk_0"))


def _fuse_bn(kernel, p, s, eps):
    """conv kernel (kh, kw, i, o) followed by BatchNorm -> (kernel, bias)."""
    t = np.asarray(p["scale"], np.float32) / np.sqrt(np.asarray(s["var"], np.float32) + eps)
    bias = np.asarray(p["bias"], np.float32) - np.asarray(s["mean"], np.float32) * t
    return np.asarray(kernel, np.float32) * t, bias


def _identity_kernel(k: int, in_per_group: int, channels: int) -> np.ndarray:
    w = np.zeros((k, k, in_per_group, channels), np.float32)
    w[k // 2, k // 2, np.arange(channels) % in_per_group, np.arange(channels)] = 1.0
    return w


def _pad_to(kernel, k: int):
    p = (k - kernel.shape[0]) // 2
    return np.pad(kernel, ((p, p), (p, p), (0, 0), (0, 0)))


def _fold_branches(p, s, eps, k: int, in_per_group: int, channels: int):
    """The (kernel, bias) of a MobileOne block's branches (identity, scale, kxk...)."""
    w = np.zeros((k, k, in_per_group, channels), np.float32)
    b = np.zeros((channels,), np.float32)
    if "identity" in p:
        kw, kb = _fuse_bn(_identity_kernel(k, in_per_group, channels), p["identity"],
                          s["identity"], eps)
        w, b = w + kw, b + kb
    for name in sorted(n for n in p if n == "conv_scale" or n.startswith("conv_kxk_")):
        kw, kb = _fuse_bn(p[name]["conv"]["kernel"], p[name]["norm"], s[name]["norm"], eps)
        w, b = w + _pad_to(kw, k), b + kb
    return w, b


def _branch_shape(p):
    """(kernel size, C_in / groups, C_out) from a block's widest conv branch."""
    kernels = [v["conv"]["kernel"].shape for n, v in p.items() if n.startswith("conv_")]
    kh, _, i, o = max(kernels)
    return kh, i, o


def _fold_mobileone(p, s, eps):
    k, i, o = _branch_shape(p)
    w, b = _fold_branches(p, s, eps, k, i, o)
    out = {"reparam_conv": {"kernel": w, "bias": b}}
    if "se" in p:
        out["se"] = _np(p["se"])
    return out


def _fold_patch_embed(p, s, eps):
    lw, lb = _fuse_bn(p["large_conv"]["conv"]["kernel"], p["large_conv"]["norm"],
                      s["large_conv"]["norm"], eps)
    sw, sb = _fuse_bn(p["small_conv"]["conv"]["kernel"], p["small_conv"]["norm"],
                      s["small_conv"]["norm"], eps)
    fused = {"reparam_conv": {"kernel": lw + _pad_to(sw, lw.shape[0]), "bias": lb + sb},
             "pw": _fold_mobileone(p["pw"], s["pw"], eps)}
    return fused, {}


def _fold_repmixer(p, s, eps):
    k, i, c = _branch_shape(p["mixer"])
    mw, mb = _fold_branches(p["mixer"], s["mixer"], eps, k, i, c)
    nw, nb = _fold_branches(p["norm"], s["norm"], eps, k, i, c)
    g = np.asarray(p["layer_scale"], np.float32)
    return {"reparam_conv": {"kernel": _identity_kernel(k, i, c) + g * (mw - nw),
                             "bias": g * (mb - nb)}}


def _fold_block(p, s, eps):
    out_p = {k: _np(v) if isinstance(v, dict) else np.asarray(v, np.float32)
             for k, v in p.items() if k != "token_mixer"}
    out_s = _np({k: v for k, v in s.items() if k != "token_mixer"})
    if "mixer" in p["token_mixer"]:
        out_p["token_mixer"] = _fold_repmixer(p["token_mixer"], s["token_mixer"], eps)
    else:  # attention: nothing to fold
        out_p["token_mixer"] = _np(p["token_mixer"])
    return out_p, out_s


def _fold_cpe(p):
    k, _, i, c = p["kernel"].shape
    return {"kernel": np.asarray(p["kernel"], np.float32) + _identity_kernel(k, i, c),
            "bias": np.asarray(p["bias"], np.float32)}
