"""Compress a trained run from the command line; prints and writes a before/after report.

    python -m jaxvision.compression prune --workdir RUN --sparsity 0.8 --steps 500 --output OUT
    python -m jaxvision.compression quantize --workdir RUN [--output OUT]
    python -m jaxvision.compression distill --teacher RUN --config configs/<student>.py \
        --steps 1000 --output OUT [--temperature 4 --alpha 0.9]

``prune`` and ``distill`` write a run directory (``load_run`` / evaluate / ``init_from`` read it);
``quantize`` writes ``OUT/quantized.msgpack`` (int8 kernels + per-channel scales, flax msgpack) and
the report. Reports go to ``OUT/compression.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def _which(v: str):
    return int(v) if v.isdigit() else v


def _pipelines(config, batch_size: int, split: str | None, seed: int = 0):
    from jaxvision import data

    train_split = config.data.get("train_split", "train")
    eval_split = split or config.data.get("eval_split", "test")
    train = data.build(
        config.data, train_split, global_batch_size=batch_size, train=True, seed=seed
    )
    evals = data.build(
        config.data, eval_split, global_batch_size=batch_size, train=False, seed=seed
    )
    return train, evals


def _load_recipe(config: str):
    """``get_config(arg)`` of a recipe file given as ``path[:arg]``."""
    import importlib.util

    path, _, arg = config.partition(":")
    if not os.path.isfile(path):
        raise SystemExit(f"error: config file {path!r} not found (e.g. configs/mnist5k_lenet.py)")
    spec = importlib.util.spec_from_file_location("jaxvision_student_recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def _write_report(out: str, report: dict) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "compression.json"), "w") as f:
        json.dump(report, f, indent=2, default=float)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jaxvision.compression", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prune", help="gradual global magnitude pruning while fine-tuning")
    p.add_argument("--workdir", required=True)
    p.add_argument(
        "--sparsity", type=float, required=True, help="target fraction of zero weights, e.g. 0.8"
    )
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of the fine-tuning")
    p.add_argument("--update-every", type=int, default=10, help="steps between mask updates")
    q = sub.add_parser(
        "quantize", help="post-training int8 quantization (weights, and activations)"
    )
    q.add_argument("--workdir", required=True)
    q.add_argument("--calibration-batches", type=int, default=4)
    d = sub.add_parser("distill", help="train a student config on a teacher run's soft labels")
    d.add_argument("--teacher", required=True, help="the teacher's run directory")
    d.add_argument("--config", required=True, help="student recipe, e.g. configs/mnist5k_lenet.py")
    d.add_argument("--steps", type=int, default=1000)
    d.add_argument("--lr", type=float, default=1e-3)
    d.add_argument("--temperature", type=float, default=4.0)
    d.add_argument("--alpha", type=float, default=0.9)
    for sp in (p, q, d):
        sp.add_argument("--output", default=None, help="output folder (default: <run>/<command>)")
        sp.add_argument(
            "--which", default="best", type=_which, help="checkpoint: latest, best or a step"
        )
        sp.add_argument("--batch-size", type=int, default=128)
        sp.add_argument(
            "--split", default=None, help="evaluation split (default: the run's eval split)"
        )
    args = parser.parse_args(argv)

    from jaxvision import compression
    from jaxvision.convert.checkpoint import save_variables
    from jaxvision.training.checkpoints import load_run

    run = load_run(args.teacher if args.command == "distill" else args.workdir, which=args.which)
    base = args.teacher if args.command == "distill" else args.workdir
    out = args.output or os.path.join(base, args.command)
    image_shape = run.image_shape or tuple(run.config.data.get("image_shape", ()))
    if args.command == "prune":
        train, evals = _pipelines(run.config, args.batch_size, args.split)
        variables, report = compression.prune_finetune(
            run.model,
            run.variables,
            train,
            target_sparsity=args.sparsity,
            steps=args.steps,
            learning_rate=args.lr,
            update_every=args.update_every,
            eval_batches=evals,
        )
        save_variables(
            out,
            variables,
            model_name=run.config.model.name,
            num_classes=len(run.class_names) or int(run.config.model.num_classes),
            image_shape=image_shape,
            class_names=run.class_names,
            config=run.config,
            extra_meta={"pruning": {k: v for k, v in report.items() if k != "per_layer"}},
        )
    elif args.command == "quantize":
        from flax import serialization

        train, evals = _pipelines(run.config, args.batch_size, args.split)
        qvars, report = compression.quantize_run(
            run.model,
            run.variables,
            evals,
            calibration_batches=train,
            num_calibration_batches=args.calibration_batches,
        )
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "quantized.msgpack"), "wb") as f:
            f.write(serialization.msgpack_serialize(qvars))
    else:
        import jax
        import jax.numpy as jnp

        from jaxvision import models
        from jaxvision.training.checkpoints import model_overrides
        from jaxvision.training.loop import init_variables

        cfg = _load_recipe(args.config)
        num_classes = len(run.class_names) or int(run.config.model.num_classes)
        overrides = model_overrides(cfg)
        overrides.pop("bn_axis_name", None)
        student = models.create(
            cfg.model.name, num_classes=num_classes, dtype=jnp.float32, **overrides
        )
        train, evals = _pipelines(cfg, args.batch_size, args.split)
        student_vars = init_variables(student, train.info.image_shape, jax.random.key(cfg.seed))
        variables, report = compression.distillation.distill(
            run.model,
            run.variables,
            student,
            student_vars,
            train,
            steps=args.steps,
            learning_rate=args.lr,
            temperature=args.temperature,
            alpha=args.alpha,
            eval_batches=evals,
        )
        save_variables(
            out,
            variables,
            model_name=cfg.model.name,
            num_classes=num_classes,
            image_shape=tuple(train.info.image_shape),
            class_names=run.class_names,
            config=cfg,
        )
    report.pop("activation_ranges", None)
    _write_report(out, report)
    print(
        json.dumps({k: v for k, v in report.items() if k != "per_layer"}, indent=2, default=float)
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
