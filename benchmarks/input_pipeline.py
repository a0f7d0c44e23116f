"""Input pipeline throughput (images/s): mock TFDS datasets and an image folder of JPEG files.

    python benchmarks/input_pipeline.py [--batch 256] [--batches 20] [--only folder] [--json]

Measures the training pipeline (decode + default augmentation + batching, AUTOTUNE) after one
warm-up batch, of
  - mock cifar10 at 32 px and mock imagenet2012 at 224 px (tfds.testing.mock_data: random sizes,
    JPEG/PNG encoded like the real ones), and
  - an image folder of photo-sized JPEG files (`--folder_images`, 4:2:0, quality 90, sizes
    around 500 x 375 as ImageNet's) at 224 px: the file -> pixels path users' own images take.
Files are written to a temporary folder first (in the page cache: disk reads are not measured).
Besides images/s (wall clock) it prints images per CPU-second of the process (all threads): the
pipeline's work per image, which other load on a shared machine does not change.
"""

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _time_pipeline(cfg, batch, batches):
    from jaxvision import data

    pipe = data.build(
        cfg, "train", global_batch_size=batch, train=True, seed=0, process_index=0, process_count=1
    )
    it = iter(pipe)
    next(it)  # warm-up: graph tracing, thread pools, cache fill
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(batches):
        b = next(it)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    assert b["image"].shape == (batch, cfg.image_size, cfg.image_size, 3)
    return elapsed, cpu


def _result(dataset, size, batch, batches, times):
    elapsed, cpu = times
    return {
        "dataset": dataset,
        "image_size": size,
        "batch": batch,
        "batches": batches,
        "seconds": round(elapsed, 3),
        "images_per_s": round(batch * batches / elapsed, 1),
        # CPU work per image (all threads), robust to other load on a shared machine
        "images_per_cpu_s": round(batch * batches / cpu, 1),
        "cpus": os.cpu_count(),
    }


def measure(name, size, batch, batches, examples, **overrides):
    import tensorflow_datasets as tfds

    from jaxvision import data

    cfg = data.default_config()
    cfg.name, cfg.image_size = name, size
    for k, v in overrides.items():
        cfg[k] = v
    with tfds.testing.mock_data(num_examples=examples):
        times = _time_pipeline(cfg, batch, batches)
    return _result(f"mock {name}", size, batch, batches, times)


def write_jpeg_folder(root, num_images, classes=4, seed=0):
    """`num_images` smooth random-colour JPEGs (4:2:0, quality 90) of ImageNet-like sizes under
    root/<class>/; returns root."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(num_images):
        w, h = int(rng.integers(400, 640)), int(rng.integers(300, 480))
        low = rng.uniform(0, 255, (h // 16 + 1, w // 16 + 1, 3)).astype(np.uint8)
        image = Image.fromarray(low).resize((w, h), Image.BILINEAR)
        path = os.path.join(root, f"class{i % classes}", f"{i:05d}.jpg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        image.save(path, quality=90, subsampling=2)
    return root


def measure_folder(size, batch, batches, num_images):
    from jaxvision import data

    with tempfile.TemporaryDirectory() as root:
        write_jpeg_folder(root, num_images)
        cfg = data.default_config()
        cfg.name, cfg.path, cfg.image_size = "image_folder", root, size
        cfg.val_fraction, cfg.test_fraction = 0.0, 0.0
        times = _time_pipeline(cfg, batch, batches)
    return _result(f"jpeg folder ({num_images} files)", size, batch, batches, times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--examples", type=int, default=2048, help="mock examples per split")
    parser.add_argument("--folder_images", type=int, default=512, help="JPEG files written")
    parser.add_argument("--only", choices=("cifar10", "imagenet2012", "folder"), default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON line per dataset")
    args = parser.parse_args()
    runs = {
        "cifar10": lambda: measure("cifar10", 32, args.batch, args.batches, args.examples),
        "imagenet2012": lambda: measure(
            "imagenet2012", 224, args.batch, args.batches, args.examples
        ),
        "folder": lambda: measure_folder(224, args.batch, args.batches, args.folder_images),
    }
    for name, run in runs.items():
        if args.only not in (None, name):
            continue
        r = run()
        if args.json:
            print(json.dumps(r))
        else:
            print(
                f"{r['dataset']:>26s} @ {r['image_size']:3d} px: {r['images_per_s']:9.1f} "
                f"images/s, {r['images_per_cpu_s']:9.1f} images/CPU-s ({r['batches']} batches "
                f"of {r['batch']}, {r['cpus']} CPUs, load {os.getloadavg()[0]:.1f})"
            )


if __name__ == "__main__":
    main()
