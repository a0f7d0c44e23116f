"""Heat-map overlays for images, from a trained run.

    python -m jaxvision.explain --workdir DIR --method gradcam|saliency|integrated_gradients|rollout \
        [--layer PATH] [--target CLASS] [--which latest|best|STEP] [--output OUT] IMAGE...

Each image is preprocessed exactly as the evaluation pipeline does it, explained for its predicted
class (or ``--target``), and written as ``OUT/<image stem>.<method>.<predicted class>.png``
(``OUT`` defaults to ``DIR/explain``) with the class name and probability in the title.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

import numpy as np


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_") or "class"


def _which(value: str):
    return int(value) if value.isdigit() else value


def main(argv=None) -> int:
    from jaxvision.explain import METHODS

    parser = argparse.ArgumentParser(
        prog="python -m jaxvision.explain", description=__doc__.split("\n")[0]
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (jpg, png, ...)")
    parser.add_argument("--workdir", required=True, help="a training run's workdir")
    parser.add_argument("--method", default="gradcam", choices=METHODS)
    parser.add_argument("--layer", default=None, help="module path for gradcam, e.g. 'stage4'")
    parser.add_argument(
        "--target", default=None, help="class index or name to explain (default: predicted)"
    )
    parser.add_argument(
        "--checkpoint", "--which", dest="which", default="latest", type=_which,
        help="checkpoint: latest (default, as evaluate and predict), best or a step",
    )
    parser.add_argument("--steps", type=int, default=32, help="integrated-gradients steps")
    parser.add_argument("--output", default=None, help="output folder (default WORKDIR/explain)")
    parser.add_argument("--alpha", type=float, default=0.45, help="heat-map opacity")
    args = parser.parse_args(argv)

    missing = [p for p in args.images if not os.path.isfile(p)]
    if missing:
        parser.error(f"image file(s) not found: {', '.join(missing)}")

    import jax
    import jax.numpy as jnp

    from jaxvision import compilation_cache, data
    from jaxvision.explain import explain, save_overlay
    from jaxvision.robustness import normalization_from_config
    from jaxvision.training.checkpoints import load_run

    compilation_cache.enable()
    run = load_run(args.workdir, which=args.which)
    class_names = list(run.class_names or [])
    target = None
    if args.target is not None:
        if args.target.isdigit():
            target = int(args.target)
        elif args.target in class_names:
            target = class_names.index(args.target)
        else:
            parser.error(
                f"--target {args.target!r} is neither a class index nor one of {class_names}"
            )

    inputs = np.stack(
        [
            np.asarray(data.preprocess_for_eval(run.config.data, data.load_image(p)), np.float32)
            for p in args.images
        ]
    )
    normalization = normalization_from_config(run.config.data)
    heat, logits = explain(
        run.model,
        run.variables,
        jnp.asarray(inputs),
        method=args.method,
        layer=args.layer,
        target=target,
        steps=args.steps,
        baseline=normalization.to_model(jnp.zeros((), jnp.float32))
        if args.method == "integrated_gradients"
        else None,
    )
    probs = np.asarray(jax.nn.softmax(logits.astype(jnp.float32), axis=-1))
    shown = np.clip(np.asarray(normalization.to_pixels(jnp.asarray(inputs))), 0, 1)
    out_dir = args.output or os.path.join(args.workdir, "explain")
    for path, h, p, img in zip(args.images, np.asarray(heat), probs, shown, strict=True):
        pred = int(p.argmax())
        name = class_names[pred] if pred < len(class_names) else str(pred)
        stem = os.path.splitext(os.path.basename(path))[0]
        out = os.path.join(out_dir, f"{stem}.{args.method}.{_safe(name)}.png")
        title = f"{args.method}: predicted {name} ({p[pred]:.1%})"
        if target is not None:
            tname = class_names[target] if target < len(class_names) else str(target)
            title += f", explaining {tname}"
        save_overlay(out, img, h, title=title, alpha=args.alpha)
        print(f"{path}\t{name}\t{p[pred]:.4f}\t{out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
