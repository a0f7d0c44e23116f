"""Make a freshly built reference model's normalization layers and position biases non-trivial
before its logits are recorded (fresh ones are the identity / zero and would hide mapping
mistakes): norm scales 1 + 0.2 N(0, 1), norm shifts and biases 0.1 N(0, 1), BatchNorm running
means 0.1 N(0, 1) and running variances U(0.5, 1.5), relative position bias tables N(0, 1)."""

from __future__ import annotations


def randomize_(model, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in list(model.named_parameters()) + list(model.named_buffers()):
            if not p.is_floating_point():
                continue
            leaf = name.rsplit(".", 1)[-1]
            noise = torch.randn(p.shape, generator=g)
            if "relative_position_bias_table" in name:
                p.copy_(noise)
            elif leaf == "running_mean" or (leaf == "bias" and p.ndim == 1):
                p.copy_(0.1 * noise)
            elif leaf == "running_var":
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif leaf == "weight" and p.ndim == 1:  # a norm's scale
                p.copy_(1.0 + 0.2 * noise)
    return model.eval()
