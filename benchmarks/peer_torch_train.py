"""The PyTorch CPU peer of ``benchmarks.throughput``'s training step (runs where torch is).

    /path/to/torch/python benchmarks/peer_torch_train.py --model resnet50 [--batch 16] [--res 224]
        [--dtype float32|bfloat16] [--steps 5] [--warmup 2] [--channels-last] [--json]

The script a PyTorch user would write to train the same network on the CPU: torchvision's
``resnet50`` / ``efficientnet_b0`` / ``mobilenet_v2`` (``weights=None``) or timm's
``vit_small_patch16_224`` for jaxvision's ``vit_s16``, 1000 classes, ``torch.optim.SGD(lr=0.1,
momentum=0.9)`` on ``CrossEntropyLoss`` of random images and labels, as ``benchmarks.throughput``
trains jaxvision's. ``--dtype bfloat16`` runs the forward pass under
``torch.autocast('cpu', torch.bfloat16)`` (float32 master weights: PyTorch's mixed precision, like
jaxvision's bf16 compute with float32 parameters). Every step is ``zero_grad`` + forward + backward
+ ``step``; PyTorch's CPU ops are synchronous, so the wall time of a step is its whole cost.
Prints the median step time and images/s (one line, or JSON). Without torch it says so and exits 0,
as the Keras comparison does; ``benchmarks.vs_torch`` runs it next to jaxvision.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

# jaxvision name -> (library, constructor name).
PEERS = {
    "resnet50": ("torchvision", "resnet50"),
    "efficientnet_b0": ("torchvision", "efficientnet_b0"),
    "mobilenet_v2": ("torchvision", "mobilenet_v2"),
    "vit_s16": ("timm", "vit_small_patch16_224"),
}


def build(torch, name: str):
    library, ctor = PEERS[name]
    if library == "timm":
        import timm

        return timm.create_model(ctor, pretrained=False, num_classes=1000)
    import torchvision

    return getattr(torchvision.models, ctor)(weights=None, num_classes=1000)


def measure(name: str, batch: int, res: int, dtype: str, steps: int, warmup: int,
            channels_last: bool) -> dict:
    import torch

    torch.manual_seed(0)
    model = build(torch, name).train()
    images = torch.randn(batch, 3, res, res)
    labels = torch.randint(0, 1000, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16")

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_fn(model(images), labels)
        loss.backward()
        opt.step()

    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    step_s = statistics.median(times)
    return {"framework": f"PyTorch {torch.__version__} CPU ({torch.get_num_threads()} threads)",
            "model": name, "peer": ".".join(PEERS[name]), "dtype": dtype, "batch": batch,
            "res": res, "channels_last": channels_last, "train_step_s": step_s,
            "train_img_per_s": batch / step_s, "steps": steps,
            "parameters": sum(p.numel() for p in model.parameters())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, choices=sorted(PEERS))
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--res", type=int, default=224)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        print("PyTorch is not installed: peer skipped", file=sys.stderr)
        return 0
    r = measure(args.model, args.batch, args.res, args.dtype, args.steps, args.warmup,
                args.channels_last)
    print(json.dumps(r) if args.json else ", ".join(f"{k}={v}" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
