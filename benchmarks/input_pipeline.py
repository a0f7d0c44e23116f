"""Input pipeline throughput (images/s) on tfds.testing.mock_data.

    python benchmarks/input_pipeline.py [--batch 256] [--batches 30] [--json]

Measures the training pipeline (decode + default augmentation + batching, AUTOTUNE) of mock
cifar10 at 32 px and mock imagenet2012 at 224 px (mock images have random sizes and are JPEG/PNG
encoded like the real ones), after one warm-up batch. Mock data measures the CPU work of the
pipeline, not disk reads.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def measure(name, size, batch, batches, examples, **overrides):
    import tensorflow_datasets as tfds

    from jaxvision import data

    cfg = data.default_config()
    cfg.name, cfg.image_size = name, size
    for k, v in overrides.items():
        cfg[k] = v
    with tfds.testing.mock_data(num_examples=examples):
        pipe = data.build(
            cfg,
            "train",
            global_batch_size=batch,
            train=True,
            seed=0,
            process_index=0,
            process_count=1,
        )
        it = iter(pipe)
        next(it)  # warm-up: graph tracing, thread pools, cache fill
        start = time.perf_counter()
        for _ in range(batches):
            b = next(it)
        elapsed = time.perf_counter() - start
    assert b["image"].shape == (batch, size, size, 3)
    return {
        "dataset": f"mock {name}",
        "image_size": size,
        "batch": batch,
        "batches": batches,
        "seconds": round(elapsed, 3),
        "images_per_s": round(batch * batches / elapsed, 1),
        "cpus": os.cpu_count(),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--examples", type=int, default=2048, help="mock examples per split")
    parser.add_argument("--json", action="store_true", help="print one JSON line per dataset")
    args = parser.parse_args()
    results = [
        measure("cifar10", 32, args.batch, args.batches, args.examples),
        measure("imagenet2012", 224, args.batch, args.batches, args.examples),
    ]
    for r in results:
        if args.json:
            print(json.dumps(r))
        else:
            print(
                f"{r['dataset']:>20s} @ {r['image_size']:3d} px: {r['images_per_s']:9.1f} "
                f"images/s ({r['batches']} batches of {r['batch']}, {r['cpus']} CPUs)"
            )


if __name__ == "__main__":
    main()
