"""Prune, quantize or distill a loaded run into a new run directory (``python -m
jaxvision.compression``'s library side).

Each function takes a run (``jaxvision.training.checkpoints.load_run``), writes ``out`` as a run
directory with ``jaxvision.convert.checkpoint.save_variables`` (config.json = the run's config, so
its data and preprocessing carry over) and ``out/compression.json``, and returns the report.
"""

from __future__ import annotations

import json
import os
from typing import Any

REPORT_FILE = "compression.json"
QUANTIZED_FILE = "quantized.msgpack"


def pipelines(config, batch_size: int, split: str | None, seed: int = 0):
    """(training pipeline, evaluation pipeline of ``split`` or the config's eval split)."""
    from jaxvision import data

    train = data.build(config.data, config.data.get("train_split", "train"),
                       global_batch_size=batch_size, train=True, seed=seed)
    evals = data.build(config.data, split or config.data.get("eval_split", "test"),
                       global_batch_size=batch_size, train=False, seed=seed)
    return train, evals


def _num_classes(run) -> int:
    return len(run.class_names) or int(run.config.model.num_classes)


def _image_shape(run):
    return run.image_shape or tuple(run.config.data.get("image_shape", ()))


def _save(run, out: str, variables, report: dict, *, step: int, config=None, model_name=None,
          image_shape=None, kind: str) -> dict:
    """The compressed variables as checkpoint ``step`` of run directory ``out`` (quantization:
    the source checkpoint's step; pruning: it plus the fine-tuning steps; distillation: the
    student's steps), so evaluate/export report the step the weights come from."""
    from jaxvision.convert.checkpoint import save_variables

    summary = {k: v for k, v in report.items() if k not in ("per_layer", "activation_ranges")}
    save_variables(
        out, variables,
        model_name=model_name or run.config.model.name,
        num_classes=_num_classes(run),
        image_shape=image_shape or _image_shape(run),
        class_names=run.class_names,
        config=config or run.config,
        extra_meta={kind: summary, "compressed_from_step": int(run.step)},
        step=int(step),
    )
    with open(os.path.join(out, REPORT_FILE), "w") as f:
        json.dump(summary, f, indent=2, default=float)
    return summary


def prune_run(run, out: str, *, sparsity: float, steps: int, learning_rate: float,
              update_every: int, batch_size: int, split: str | None) -> dict[str, Any]:
    """Gradual magnitude pruning while fine-tuning (``prune_finetune``) into run directory ``out``."""
    from jaxvision import compression

    train, evals = pipelines(run.config, batch_size, split)
    variables, report = compression.prune_finetune(
        run.model, run.variables, train, target_sparsity=sparsity, steps=steps,
        learning_rate=learning_rate, update_every=update_every, eval_batches=evals)
    return _save(run, out, variables, report, step=int(run.step) + steps, kind="pruning")


def quantize_to_run(run, out: str, *, calibration_batches: int, batch_size: int,
                    split: str | None) -> dict[str, Any]:
    """Post-training int8 quantization into run directory ``out``: its checkpoint holds the
    int8-rounded kernels dequantized to float32 (what int8-weight inference computes, readable by
    every command), ``out/quantized.msgpack`` the int8 kernels and scales themselves."""
    from flax import serialization

    from jaxvision import compression

    train, evals = pipelines(run.config, batch_size, split)
    qvars, report = compression.quantize_run(
        run.model, run.variables, evals, calibration_batches=train,
        num_calibration_batches=calibration_batches)
    dequantized = {"params": compression.dequantize(qvars["params"]),
                   "batch_stats": qvars["batch_stats"]}
    report["stored_weights"] = "int8 kernels dequantized to float32 (activations not quantized)"
    summary = _save(run, out, dequantized, report, step=run.step, kind="quantization")
    with open(os.path.join(out, QUANTIZED_FILE), "wb") as f:
        f.write(serialization.msgpack_serialize(qvars))
    return summary


def distill_run(run, student_config, out: str, *, steps: int, learning_rate: float,
                temperature: float, alpha: float, batch_size: int, split: str | None,
                kind: str = "soft") -> dict[str, Any]:
    """Train ``student_config``'s model on ``run``'s soft labels (``kind='hard'``: its argmax, as
    DeiT) into run directory ``out``."""
    import jax
    import jax.numpy as jnp

    from jaxvision import compression, models
    from jaxvision.training.checkpoints import model_overrides
    from jaxvision.training.loop import init_variables

    overrides = model_overrides(student_config)
    overrides.pop("bn_axis_name", None)
    student = models.create(student_config.model.name, num_classes=_num_classes(run),
                            dtype=jnp.float32, **overrides)
    train, evals = pipelines(student_config, batch_size, split)
    student_vars = init_variables(student, train.info.image_shape,
                                  jax.random.key(student_config.seed))
    variables, report = compression.distillation.distill(
        run.model, run.variables, student, student_vars, train, steps=steps,
        learning_rate=learning_rate, temperature=temperature, alpha=alpha, eval_batches=evals,
        kind=kind)
    return _save(run, out, variables, report, step=steps, config=student_config,
                 model_name=student_config.model.name,
                 image_shape=tuple(train.info.image_shape), kind="distillation")
