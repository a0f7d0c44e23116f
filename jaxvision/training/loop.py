"""The training loop: ``train_and_evaluate(config, workdir)``.

Workdir layout (written by process 0; checkpoints written collectively by all processes)::

  <workdir>/config.json        the resolved config (total_steps and model.num_classes filled in)
  <workdir>/env.json           package versions, devices, processes, host
  <workdir>/metrics.jsonl      one JSON object per logging/eval event: {"step": N, "train/loss": ...}
  <workdir>/tensorboard/       TensorBoard event files (same scalars)
  <workdir>/checkpoints/<N>/   Orbax checkpoints (see jaxvision.training.checkpoints)

A workdir that already holds checkpoints is resumed from the latest one: the train state and the data
position (the step) are restored, so an interrupted run ends with the same parameters as an
uninterrupted one.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import socket
import sys
import time
from collections.abc import Callable
from importlib import metadata as importlib_metadata

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxvision import config as config_lib
from jaxvision.training import checkpoints as ckpt_lib
from jaxvision.training import device_data, optimizers, parallel, precision, progress, steps
from jaxvision.training.state import TrainState

log = logging.getLogger("jaxvision.train")
EVAL_SCALARS = ("top1", "top5", "nll", "ece", "brier")


class TrainingDivergedError(FloatingPointError):
    """The training loss became NaN or Inf."""


# ---- small helpers -------------------------------------------------------------------------
def is_chief() -> bool:
    return jax.process_index() == 0


def environment() -> dict:
    pkgs = {}
    for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "ml-collections",
                 "tensorflow-cpu", "tensorflow", "tensorflow-datasets", "numpy", "jaxvision"):
        try:
            pkgs[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            pass
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "packages": pkgs,
        "backend": jax.default_backend(),
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "device_count": jax.device_count(),
        "local_device_count": jax.local_device_count(),
        "devices": [str(d) for d in jax.devices()],
        "argv": sys.argv,
    }


class MetricWriter:
    """metrics.jsonl + TensorBoard on process 0; a no-op elsewhere."""

    def __init__(self, workdir: str, enabled: bool):
        self.enabled = enabled
        self._tb = None
        if not enabled:
            return
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")  # noqa: SIM115
        try:
            import tensorflow as tf

            tf.config.set_visible_devices([], "GPU")
            self._tb = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
            self._tf = tf
        except Exception as e:  # noqa: BLE001 - TensorBoard is optional, the JSONL log is not
            log.warning("TensorBoard events disabled: %s", e)

    def write(self, step: int, scalars: dict) -> None:
        if not self.enabled:
            return
        scalars = {k: float(v) for k, v in scalars.items()}
        self._jsonl.write(json.dumps({"step": int(step), **scalars}) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            with self._tb.as_default():
                for k, v in scalars.items():
                    self._tf.summary.scalar(k, v, step=int(step))
            self._tb.flush()

    def close(self) -> None:
        if self.enabled:
            self._jsonl.close()
            if self._tb is not None:
                self._tb.close()


def _data_build():
    from jaxvision import data

    return data.build


def _test_split(config, eval_split: str, *, default_data: bool) -> str:
    """The test split to report once at the end, or '' when it is the evaluation split itself
    (or the data source is not jaxvision.data, whose split names cannot be resolved)."""
    wanted = config.data.get("test_split", "") if "data" in config else ""
    if not wanted or not default_data:
        return ""
    from jaxvision.data import sources

    try:
        src = sources.get_source(config.data)
        test = sources.resolve_split(src, wanted, role="test")
        val = sources.resolve_split(src, eval_split) if eval_split else ""
    except Exception:  # a dataset without a test split: nothing more to report
        return ""
    return "" if test == val else test


def _eval_split(config) -> str:
    return config.data.get("eval_split", "test") if "data" in config else "test"


def _bad_loss_message(step: int, last_good: int | None, workdir: str) -> str:
    where = (
        f"The last good checkpoint (step {last_good}) is kept in {ckpt_lib.checkpoint_dir(workdir)}"
        if last_good is not None
        else "No checkpoint was written"
    )
    return (
        f"The training loss became NaN or Inf by step {step}; training stopped. {where}. Lower "
        "--config.schedule.base_lr, add warm-up (--config.schedule.warmup_steps), enable "
        "--config.clip_grad_norm=1.0, or use --config.dtype=float32."
    )


def build_model(config, num_classes: int, *, pmap: bool):
    from jaxvision import models

    overrides = ckpt_lib.model_overrides(config)
    if pmap:
        overrides["bn_axis_name"] = parallel.AXIS_NAME
    return models.create(
        config.model.name,
        num_classes=num_classes,
        dtype=precision.compute_dtype(config.dtype),
        param_dtype=jnp.float32,
        **overrides,
    )


def init_variables(model, image_shape, rng) -> dict:
    """{'params', 'batch_stats'} of ``model`` for inputs (1, *image_shape), float32."""
    x = jnp.zeros((1, *image_shape), jnp.float32)
    # Non-partitionable threefry compiles init about twice as fast (init is replicated, so the
    # partitionable variant buys nothing here); it only changes which random numbers are drawn.
    with jax.threefry_partitionable(False):
        variables = jax.jit(functools.partial(model.init, train=False))(rng, x)
    variables = dict(variables)
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


# ---- the loop ------------------------------------------------------------------------------
def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    build_data: Callable | None = None,
    on_evaluate: Callable[[int, dict], bool] | None = None,
) -> dict:
    """Train ``config`` in ``workdir`` (resuming if it has checkpoints); returns final metrics.

    ``build_data`` replaces ``jaxvision.data.build`` (same signature), e.g. for synthetic data.
    ``on_evaluate(step, metrics)`` is called on process 0 after every evaluation with the
    ``val/...`` metrics; returning True stops the run cleanly: the checkpoint of that step is
    saved (and committed) and the result carries ``"stopped": "on_evaluate"``.
    Returns {'step', 'train/loss', and 'val/<metric>' of the last evaluation}.
    """
    config_lib.check(config)
    default_data = build_data is None
    build_data = build_data or _data_build()
    workdir = os.path.abspath(workdir)
    chief = is_chief()
    if chief:
        os.makedirs(workdir, exist_ok=True)
    dp = parallel.DataParallel(config.parallel)
    config_lib.check_devices(config, dp.num_devices, jax.process_count())
    eval_batch = config.eval_batch_size or config.batch_size

    store = ckpt_lib.CheckpointStore(
        ckpt_lib.checkpoint_dir(workdir),
        keep=config.keep_checkpoints,
        best_metric=f"val/{config.best_metric}" if config.best_metric else "",
        best_mode=config.best_mode,
    )
    start_step = store.latest_step() or 0

    train_split = config.data.get("train_split", "train")
    # ---- issue 15: a small dataset trained from device memory, chunks of steps per dispatch
    on_device = (device_data.maybe_create(config, dp, build_data, train_split, eval_batch)
                 if default_data else None)
    if on_device is not None:
        train_data = on_device.train
    else:
        train_data = build_data(config.data, train_split, global_batch_size=config.batch_size,
                                train=True, seed=config.seed, start_step=start_step)
    # ---- end issue 15
    info = train_data.info
    if chief:  # issue 13: name every file skip_corrupt left out, in WORKDIR/skipped_files.txt
        from jaxvision.data.sources import write_skipped_files

        write_skipped_files(getattr(info, "skipped", ()), workdir)
    num_classes = int(config.model.num_classes or info.num_classes)
    image_shape = tuple(int(d) for d in info.image_shape)
    total_steps = config_lib.resolve_total_steps(config, info.num_examples)
    spe = config_lib.steps_per_epoch(config, info.num_examples)

    model = build_model(config, num_classes, pmap=dp.mode == "pmap")
    rng = jax.random.PRNGKey(config.seed)
    init_rng, train_rng = jax.random.split(rng)
    variables = init_variables(model, image_shape, init_rng)
    reinitialized = []
    if config.init_from and not start_step:
        pretrained, pre_meta = ckpt_lib.load_pretrained(config.init_from, config.init_from_step)
        variables["params"], reinit_p = ckpt_lib.merge_pretrained(
            variables["params"], pretrained["params"])
        variables["batch_stats"], reinit_b = ckpt_lib.merge_pretrained(
            variables["batch_stats"], pretrained["batch_stats"])
        reinitialized = reinit_p + reinit_b
        if chief:
            log.warning(
                "init_from %s (model %s, step %s): %d tensors loaded, re-initialized %d: %s",
                config.init_from, pre_meta.get("model"), pre_meta.get("step"),
                len(jax.tree.leaves(variables["params"])) - len(reinit_p), len(reinitialized),
                "; ".join(reinitialized) or "none")

    tx, schedule = optimizers.build_optimizer(
        config, variables["params"], total_steps=total_steps, steps_per_epoch=spe)
    state = TrainState.create(
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        tx=tx,
        rng=train_rng,
        ema=config.ema_decay > 0,
        loss_scale=precision.needs_loss_scaling(config.dtype),
    )

    meta_base = {
        "model": config.model.name,
        "num_classes": num_classes,
        "class_names": list(info.class_names),
        "image_shape": list(image_shape),
        "total_steps": total_steps,
    }
    es = {"best": None, "bad_evals": 0}
    if start_step:
        where = os.path.join(ckpt_lib.checkpoint_dir(workdir), str(start_step))
        ckpt_lib.check_compatible(store.read_meta(start_step), model_name=config.model.name,
                                  num_classes=num_classes, where=where)
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=dp.replicated), state)
        try:
            restored, meta = store.restore(start_step, abstract)
        except (ValueError, KeyError, TypeError) as e:
            raise ckpt_lib.mismatch_error(where, e) from e
        state = restored.replace(tx=tx)
        es = meta.get("early_stopping", es)
        if chief:
            log.info("Resuming from %s (step %d of %d).", where, start_step, total_steps)
    state = dp.put_state(state)

    resolved = ml_collections.ConfigDict(config.to_dict())
    with resolved.unlocked():
        resolved.total_steps = total_steps
        resolved.model.num_classes = num_classes
    if chief:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(resolved.to_json_best_effort(indent=2, sort_keys=True))
        with open(os.path.join(workdir, "env.json"), "w") as f:
            json.dump(environment(), f, indent=2)
        if reinitialized:
            with open(os.path.join(workdir, "init_from.json"), "w") as f:
                json.dump({"init_from": config.init_from, "reinitialized": reinitialized}, f,
                          indent=2)
    writer = MetricWriter(workdir, enabled=chief)

    augment_fn = None
    d = config.data
    if d.get("mixup_alpha", 0) > 0 or d.get("cutmix_alpha", 0) > 0:
        from jaxvision.data import augment

        augment_fn = functools.partial(
            augment.mixup_cutmix, num_classes=num_classes, mixup_alpha=d.mixup_alpha,
            cutmix_alpha=d.cutmix_alpha, switch_prob=d.get("mixup_switch_prob", 0.5))
    class_weights = _class_weights(config, train_data)
    raw_train_step = steps.make_train_step(
        model, num_classes=num_classes, schedule=schedule, label_smoothing=config.label_smoothing,
        class_weights=class_weights, ema_decay=config.ema_decay,
        grad_accum_steps=config.grad_accum_steps, axis_name=dp.axis_name, augment_fn=augment_fn)
    train_step = dp.compile_train_step(raw_train_step)

    eval_split = _eval_split(config)
    evaluate = None
    if eval_split:
        from jaxvision.evaluation import metrics as eval_metrics

        eval_model = model
        raw_eval_step = steps.make_eval_step(
            eval_model, num_classes=num_classes, use_ema=config.ema_decay > 0,
            axis_name=dp.axis_name)
        eval_step = dp.compile_eval_step(raw_eval_step)
        merge = dp.compile_merge(eval_metrics.merge_states)
        pipes = {}  # issue 15: each evaluation pipeline is built once

        def evaluate(state, split=eval_split, prefix="val"):
            sums = None
            if on_device is not None:  # issue 15: the whole split in one dispatch
                sums = on_device.evaluate(state, split)
            elif split not in pipes:
                pipes[split] = build_data(config.data, split, global_batch_size=eval_batch,
                                          train=False, seed=config.seed)
            for batch in pipes.get(split, ()):
                s = eval_step(state, dp.put_batch(batch))
                sums = s if sums is None else merge(sums, s)
            if sums is None:
                return {}
            res = eval_metrics.finalize(eval_metrics.to_host(dp.host_value(sums)))
            return {f"{prefix}/{k}": float(res[k]) for k in EVAL_SCALARS if k in res}

    # ---- run ---------------------------------------------------------------------------------
    last_good = start_step or None
    final = {"step": start_step}
    pending = []
    step = start_step
    t_last, step_last = time.perf_counter(), step
    # [issue 14] the bar counts finished steps (jaxvision.training.progress)
    pbar = progress.StepProgress(total_steps, step,
                                 enabled=chief and config.progress_bar and step < total_steps)
    # ---- issue 15: chunks of steps per dispatch on the device path
    if on_device is not None:
        on_device.compile(raw_train_step, raw_eval_step if evaluate else None,
                          eval_metrics.merge_states if evaluate else None)
    it = iter(train_data) if on_device is None else None
    stop_reason = None
    try:
        while step < total_steps:
            if on_device is not None:
                n = on_device.chunk_length(step, total_steps, evaluating=evaluate is not None)
                state, m = on_device.run(state, n)
            else:
                n = 1
                state, m = train_step(state, dp.put_batch(next(it)))
            # ---- end issue 15
            pending.append(m)
            step += n
            pbar.dispatched(step, m)  # [issue 14]
            last = step == total_steps
            do_eval = evaluate is not None and (
                last or (config.eval_every_steps and step % config.eval_every_steps == 0))
            do_ckpt = last or (config.checkpoint_every_steps
                               and step % config.checkpoint_every_steps == 0)
            if pending and (step % config.log_every_steps == 0 or do_eval or do_ckpt):
                # The only host sync between log steps: fetch the accumulated step metrics.
                host = [dp.host_value(x) for x in pending]
                pending = []
                pbar.synced(step)  # [issue 14]
                # Per-step metrics are scalars, per-chunk ones (issue 15) vectors: mean of all.
                scalars = {f"train/{k}": float(np.mean(np.concatenate(
                    [np.ravel(h[k]) for h in host]))) for k in host[0]}
                # NaN inputs can hide behind ReLU (XLA's max(NaN, 0) = 0) and leave the loss
                # finite: the gradient norm shows them. With float16 loss scaling non-finite
                # gradients are expected and skipped, so only the loss counts there.
                watched = ("loss",) if "skipped" in host[0] else ("loss", "grad_norm")
                if not all(np.isfinite(h[k]).all() for h in host for k in watched):
                    raise TrainingDivergedError(_bad_loss_message(step, last_good, workdir))
                now = time.perf_counter()
                scalars["train/images_per_sec"] = (
                    (step - step_last) * config.batch_size / max(now - t_last, 1e-9))
                scalars["train/epoch"] = step / spe
                t_last, step_last = now, step
                writer.write(step, scalars)
                final.update(scalars)
                if pbar.bar is not None:
                    pbar.set_postfix(loss=f"{scalars['train/loss']:.4f}",
                                     img_s=f"{scalars['train/images_per_sec']:.0f}", refresh=False)
            eval_res = None
            if do_eval:
                eval_res = evaluate(state)
                writer.write(step, eval_res)
                final.update(eval_res)
                if pbar.enabled:
                    pbar.write(f"step {step}: " + ", ".join(
                        f"{k[4:]}={v:.4f}" for k, v in eval_res.items()))
                stop_reason = _early_stopping(config, es, eval_res)
                # -- on_evaluate hook (issue 18 stand-in for issue 12's contract) --
                if on_evaluate is not None and _hook_says_stop(on_evaluate, step, eval_res):
                    final["stopped"] = "on_evaluate"
                # -- end on_evaluate hook --
            if do_ckpt or eval_res is not None or stop_reason:
                meta = {**meta_base, "step": step, "early_stopping": es,
                        "metrics": eval_res or {}}
                store.save(step, dp.checkpoint_view(state), meta, metrics=eval_res)
                last_good = step
            if do_eval or do_ckpt:
                t_last = time.perf_counter()  # images/s counts training time only
            if stop_reason:
                if chief:
                    log.warning("Early stopping at step %d: %s", step, stop_reason)
                final["early_stopped"] = True
                break
            if "stopped" in final:  # on_evaluate hook; the checkpoint above holds this step
                break
        if step == start_step and evaluate is not None and step >= total_steps:
            final.update(evaluate(state))  # already finished: report the final metrics again
        test_split = _test_split(config, eval_split, default_data=build_data is _data_build())
        if evaluate is not None and test_split and "stopped" not in final:
            # The held-out test split is read once, at the end, so it never steers training.
            test_res = evaluate(state, test_split, "test")
            writer.write(step, test_res)
            final.update(test_res)
            if chief:
                log.info("step %d, %s split: %s", step, test_split, ", ".join(
                    f"{k[5:]}={v:.4f}" for k, v in test_res.items()))
    finally:
        pbar.close()
        store.close()
        writer.close()
    final["step"] = step
    return final


def _hook_says_stop(on_evaluate: Callable[[int, dict], bool], step: int, metrics: dict) -> bool:
    """Process 0's answer of ``on_evaluate``, the same on every process (one collective)."""
    stop = bool(on_evaluate(step, metrics)) if is_chief() else False
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        stop = bool(multihost_utils.broadcast_one_to_all(np.asarray(stop)))
    return stop


def _early_stopping(config, es: dict, eval_res: dict) -> str | None:
    """Update ``es`` (best value, evaluations without improvement); reason to stop, or None."""
    e = config.early_stopping
    key = f"val/{e.metric}"
    if not e.patience or key not in eval_res:
        return None
    v = eval_res[key]
    sign = 1.0 if e.mode == "max" else -1.0
    if es["best"] is None or sign * (v - es["best"]) > e.min_delta:
        es["best"], es["bad_evals"] = v, 0
        return None
    es["bad_evals"] += 1
    if es["bad_evals"] >= e.patience:
        return (f"{key} has not improved on {es['best']:.4f} for {es['bad_evals']} evaluations "
                f"(patience {e.patience})")
    return None


def _class_weights(config, train_data):
    """Per-class loss weights (K,) when ``data.class_weighting`` asks for them, else None."""
    scheme = config.data.get("class_weighting", "none")
    if not scheme or scheme == "none":
        return None
    from jaxvision import data

    del train_data
    return np.asarray(data.class_weights(config.data), np.float32)
