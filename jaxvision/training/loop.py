"""The training loop: ``train_and_evaluate(config, workdir)``.

Workdir layout (written by process 0; checkpoints written collectively by all processes)::

  <workdir>/config.json        the resolved config (total_steps and model.num_classes filled in)
  <workdir>/env.json           package versions, devices, processes, host
  <workdir>/metrics.jsonl      one JSON object per logging/eval event: {"step": N, "train/loss": ...}
  <workdir>/tensorboard/       TensorBoard event files (same scalars)
  <workdir>/checkpoints/<N>/   Orbax checkpoints (see jaxvision.training.checkpoints)

A workdir that already holds checkpoints is resumed from the newest good one (its digest verifies;
damaged ones are moved to ``<workdir>/checkpoints_damaged/``): the train state and the data
position (the step) are restored, so an interrupted run ends with the same parameters as an
uninterrupted one. The run holds ``<workdir>/lock`` (one run per workdir), stops cleanly on
SIGTERM/SIGINT with a checkpoint of the step it finished, and refuses to resume on other data.

``train_and_evaluate`` reads as its four steps: build (data, model, steps), restore (the newest good
checkpoint, or fresh / ``init_from`` parameters), run (train, evaluate, checkpoint, stop on
request) and report (the held-out test split, once, at the end).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import platform
import shutil
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from importlib import metadata as importlib_metadata

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxvision import config as config_lib
from jaxvision.training import checkpoints as ckpt_lib
from jaxvision.training import (
    data_identity,
    device_data,
    integrity,
    optimizers,
    parallel,
    precision,
    preemption,
    progress,
    steps,
    workdir_lock,
)
from jaxvision.training.metric_log import MetricWriter
from jaxvision.training.state import TrainState

log = logging.getLogger("jaxvision.train")
EVAL_SCALARS = ("top1", "top5", "nll", "ece", "brier")


class TrainingDivergedError(FloatingPointError):
    """The training loss became NaN or Inf."""


class CheckpointSaveError(OSError):
    """Writing a checkpoint failed (disk full, read-only, quota); earlier checkpoints are intact."""


class DataChangedError(ValueError):
    """The data differs from the data the checkpoint was trained on."""


class NoGoodCheckpointError(ValueError):
    """Every checkpoint of the workdir is damaged and no restart from scratch was asked for."""


# ---- small helpers -------------------------------------------------------------------------
def is_chief() -> bool:
    return jax.process_index() == 0


def environment() -> dict:
    from jaxvision.layers import onednn_bf16

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
        # Settings that change how programs are lowered, and the oneDNN bf16 choice
        # (jaxvision.layers.onednn_bf16) stored for this CPU.
        "jaxvision_env": {k: v for k, v in sorted(os.environ.items())
                          if k.startswith("JAXVISION_")},
        "onednn_bf16": onednn_bf16.record(),
    }


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
    if config.get("remat", "none") != "none":  # issue 17: blocks' rematerialization policy
        overrides["remat"] = config.remat
    return models.create(
        config.model.name,
        num_classes=num_classes,
        dtype=precision.compute_dtype(config.dtype),
        param_dtype=jnp.float32,
        **overrides,
    )


def init_variables(model, image_shape, rng, dp: parallel.DataParallel | None = None) -> dict:
    """{'params', 'batch_stats'} of ``model`` for inputs (1, *image_shape), float32.

    With ``dp`` sharding the state, the variables are created in their sharded layout (no device
    ever holds them whole); else on the default device.
    """
    x = jnp.zeros((1, *image_shape), jnp.float32)
    init = functools.partial(model.init, train=False)
    out_shardings = None
    if dp is not None and dp.sharded:
        out_shardings = dp.state_shardings(jax.eval_shape(init, rng, x))
    # Non-partitionable threefry compiles init about twice as fast; it only changes which random
    # numbers are drawn (the same ones whatever the layout).
    with jax.threefry_partitionable(False):
        variables = jax.jit(init, out_shardings=out_shardings)(rng, x)
    variables = dict(variables)
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


# ---- the loop ------------------------------------------------------------------------------
OnEvaluate = Callable[[int, dict], bool]


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    build_data: Callable | None = None,
    on_evaluate: OnEvaluate | None = None,
    restart_from_scratch: bool = False,
    objective: Callable | None = None,
) -> dict:
    """Train ``config`` in ``workdir`` (resuming from its newest good checkpoint); final metrics.

    build_data: replaces ``jaxvision.data.build`` (same signature), e.g. for synthetic data.
    on_evaluate: ``on_evaluate(step, {'val/<metric>': float})`` is called on process 0 after every
      evaluation; True stops the run cleanly (a checkpoint of ``step`` is saved and committed) and
      the result holds ``"stopped": "on_evaluate"`` (e.g. an Optuna pruner).
    restart_from_scratch: when every checkpoint of the workdir is damaged, train from step 0
      instead of raising NoGoodCheckpointError.
    objective: replaces the training loss (``steps.make_train_step``'s ``objective``); a config
      with ``distill.teacher_workdir`` needs one (``compression.distillation.train_with_teacher``
      builds it from the teacher run).

    Returns {'step', 'train/...' of the last log step, 'val/<metric>' of the last evaluation,
    'test/<metric>' when a held-out test split was reported}, plus ``"stopped": 'SIGTERM' |
    'SIGINT' | 'on_evaluate'`` when the run stopped before ``total_steps`` on request, and
    ``"early_stopped": True`` after early stopping.

    Raises ValueError (bad config or data; CheckpointMismatchError, DataChangedError,
    NoGoodCheckpointError), FileNotFoundError, workdir_lock.WorkdirBusyError, CheckpointSaveError,
    TrainingDivergedError.
    """
    config_lib.check(config)
    if objective is None and config.get("distill"):  # never a distillation recipe without its teacher
        raise ValueError("config.distill asks for a teacher, which train_and_evaluate does not load: "
                         "train with python -m jaxvision.train or "
                         "compression.distillation.train_with_teacher")
    new_workdir = not os.path.exists(os.path.abspath(os.path.expanduser(workdir)))
    workdir = _prepare_workdir(workdir)
    with _removed_if_refused(workdir, new_workdir and is_chief()) as started:
        with workdir_lock.WorkdirLock(workdir, enabled=is_chief()), preemption.StopSignals(
                sync_every=config.preemption_sync_every_steps) as signals:
            job = _build(config, workdir, build_data or _data_build(), objective)
            try:
                _restore(job, restart_from_scratch)
                _write_run_files(job)
                started.set()
                final = _run(job, signals, on_evaluate)
                if "stopped" not in final:
                    final.update(_report(job, final["step"]))
            finally:
                job.close()
    return final


@contextlib.contextmanager
def _removed_if_refused(workdir: str, created_here: bool):
    """Remove ``workdir`` (its lock, empty checkpoints/ ...) when this call created it and the
    run was refused before it began (a mesh, batch, data or checkpoint mistake found while
    building): a rejected command leaves nothing behind. Yields an Event the caller sets once
    the run begins; from then on the workdir holds the run's files and is kept."""
    started = threading.Event()
    try:
        yield started
    except BaseException:
        if created_here and not started.is_set():
            shutil.rmtree(workdir, ignore_errors=True)
        raise


@dataclasses.dataclass
class _Job:
    """Everything built for one run; ``state`` and ``start_step`` are set by ``_restore``."""

    config: ml_collections.ConfigDict
    workdir: str
    chief: bool
    dp: parallel.DataParallel
    store: ckpt_lib.CheckpointStore
    build_data: Callable
    default_data: bool
    info: object
    num_classes: int
    image_shape: tuple
    total_steps: int
    steps_per_epoch: int
    model: object
    tx: object
    schedule: object
    state: object
    eval_split: str
    evaluate: Callable | None
    train_step: Callable | None = None
    on_device: object = None  # device_data.DeviceTraining when the split is held on the device
    raw_train_step: Callable | None = None  # unjitted steps, for the device path's chunks
    raw_eval_step: Callable | None = None
    train_data: object = None
    train_data_start: int = 0
    start_step: int = 0
    es: dict = dataclasses.field(default_factory=lambda: {"best": None, "bad_evals": 0})
    data_id: dict | None = None
    objective: Callable | None = None  # the training loss when not cross-entropy (distillation)
    reinitialized: list = dataclasses.field(default_factory=list)
    writer: MetricWriter | None = None

    def meta(self, step: int, eval_res: dict | None) -> dict:
        meta = {
            "model": self.config.model.name,
            "num_classes": self.num_classes,
            "class_names": list(self.info.class_names),
            "image_shape": list(self.image_shape),
            "total_steps": self.total_steps,
            "batch_size": int(self.config.batch_size),
            "step": int(step),
            "early_stopping": self.es,
            "metrics": eval_res or {},
        }
        if self.data_id is not None:
            meta[data_identity.META_KEY] = self.data_id
        return meta

    def close(self) -> None:
        try:
            self.store.close()
        except Exception as e:  # noqa: BLE001 - already failing: keep the first error
            log.debug("closing the checkpoint store: %s", e)
        if self.writer is not None:
            self.writer.close()


def _prepare_workdir(workdir: str) -> str:
    workdir = os.path.abspath(os.path.expanduser(workdir))
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"--workdir {workdir} is a file; give a directory (new or a run's).")
    if is_chief():
        try:
            os.makedirs(workdir, exist_ok=True)
        except OSError as e:
            raise ValueError(f"cannot create --workdir {workdir}: {e.strerror}; choose a "
                             "writable place.") from None
        if not os.access(workdir, os.W_OK):
            raise ValueError(f"--workdir {workdir} is not writable; choose a writable place.")
    return workdir


# ---- build -----------------------------------------------------------------------------------
def _build(config, workdir: str, build_data: Callable, objective: Callable | None = None) -> _Job:
    """Data, model, optimizer, a freshly initialised state and the compiled steps."""
    chief = is_chief()
    dp = parallel.from_config(config)  # the mesh, checked against the devices and the batch
    store = ckpt_lib.CheckpointStore(
        ckpt_lib.checkpoint_dir(workdir),
        keep=config.keep_checkpoints,
        best_metric=f"val/{config.best_metric}" if config.best_metric else "",
        best_mode=config.best_mode,
    )
    train_data_start = store.latest_step() or 0
    default_data = build_data is _data_build()
    eval_batch = config.eval_batch_size or config.batch_size
    # A small dataset can be held on the device and trained in chunks of steps per dispatch.
    on_device = (device_data.maybe_create(config, dp, build_data, _train_split(config), eval_batch)
                 if default_data else None)
    if on_device is not None:
        train_data = on_device.train
    else:
        train_data = _train_data(config, build_data, start_step=train_data_start)
    info = train_data.info
    config_lib.check_data(config, info)
    if chief:  # name every file skip_corrupt left out, in WORKDIR/skipped_files.txt
        from jaxvision.data.sources import write_skipped_files

        write_skipped_files(getattr(info, "skipped", ()), workdir)
    num_classes = int(config.model.num_classes or info.num_classes)
    image_shape = tuple(int(d) for d in info.image_shape)
    config_lib.resolve_model_image_size(config, image_shape)
    total_steps = config_lib.resolve_total_steps(config, info.num_examples)
    spe = config_lib.steps_per_epoch(config, info.num_examples)

    model = build_model(config, num_classes, pmap=dp.mode == "pmap")
    init_rng, train_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    variables = init_variables(model, image_shape, init_rng, dp)
    tx, schedule = optimizers.build_optimizer(
        config, variables["params"], total_steps=total_steps, steps_per_epoch=spe)
    state = _fresh_state(config, variables, tx, train_rng)
    eval_split = _eval_split(config)
    job = _Job(config=config, workdir=workdir, chief=chief, dp=dp, store=store,
               build_data=build_data, default_data=default_data, info=info,
               num_classes=num_classes, image_shape=image_shape, total_steps=total_steps,
               steps_per_epoch=spe, model=model, tx=tx, schedule=schedule, state=state,
               eval_split=eval_split, evaluate=None, train_data=train_data,
               train_data_start=train_data_start, on_device=on_device, objective=objective)
    if job.default_data:
        job.data_id = data_identity.fingerprint(
            config.data, [_train_split(config), eval_split,
                          _test_split(config, eval_split, default_data=True)], info.class_names)
    job.train_step = _compile_train_step(job)
    job.evaluate = _make_evaluate(job)
    if on_device is not None:  # chunks of steps per dispatch, whole splits evaluated at once
        from jaxvision.evaluation import metrics as eval_metrics

        on_device.compile(job.raw_train_step, job.raw_eval_step,
                          eval_metrics.merge_states if job.raw_eval_step else None)
        on_device.set_total_steps(total_steps)
    return job


def _train_split(config) -> str:
    return config.data.get("train_split", "train")


def _train_data(config, build_data: Callable, start_step: int):
    return build_data(config.data, _train_split(config), global_batch_size=config.batch_size,
                      train=True, seed=config.seed, start_step=start_step)


def _fresh_state(config, variables: dict, tx, rng) -> TrainState:
    return TrainState.create(
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        tx=tx,
        rng=rng,
        ema=config.ema_decay > 0,
        loss_scale=precision.needs_loss_scaling(config.dtype),
    )


def _compile_train_step(job: _Job) -> Callable:
    config, d = job.config, job.config.data
    from jaxvision.data import augment

    augment_fn = augment.batch_augment(d, job.num_classes)
    raw_train_step = steps.make_train_step(
        job.model, num_classes=job.num_classes, schedule=job.schedule,
        label_smoothing=config.label_smoothing, class_weights=_class_weights(config),
        ema_decay=config.ema_decay, grad_accum_steps=config.grad_accum_steps,
        axis_name=job.dp.axis_name, augment_fn=augment_fn, objective=job.objective)
    job.raw_train_step = raw_train_step
    return job.dp.compile_train_step(raw_train_step, job.state)


def _make_evaluate(job: _Job) -> Callable | None:
    """``evaluate(state, split, prefix) -> {'<prefix>/<metric>': float}``, or None without an
    evaluation split."""
    if not job.eval_split:
        return None
    from jaxvision.evaluation import metrics as eval_metrics

    config, dp = job.config, job.dp
    eval_batch = config.eval_batch_size or config.batch_size
    raw_eval_step = steps.make_eval_step(
        job.model, num_classes=job.num_classes, use_ema=config.ema_decay > 0,
        axis_name=dp.axis_name)
    eval_step = dp.compile_eval_step(raw_eval_step, job.state)
    merge = dp.compile_merge(eval_metrics.merge_states)
    job.raw_eval_step = raw_eval_step
    pipes = {}  # each evaluation pipeline is built once

    def evaluate(state, split=job.eval_split, prefix="val"):
        sums = None
        if job.on_device is not None:  # the whole split in one dispatch
            sums = job.on_device.evaluate(state, split)
        elif split not in pipes:
            pipes[split] = job.build_data(config.data, split, global_batch_size=eval_batch,
                                          train=False, seed=config.seed)
        for batch in pipes.get(split, ()):
            s = eval_step(state, dp.put_batch(batch))
            sums = s if sums is None else merge(sums, s)
        if sums is None:
            return {}
        res = eval_metrics.finalize(eval_metrics.to_host(dp.host_value(sums)))
        return {f"{prefix}/{k}": float(res[k]) for k in EVAL_SCALARS if k in res}

    return evaluate


# ---- restore ---------------------------------------------------------------------------------
def _restore(job: _Job, restart_from_scratch: bool) -> None:
    """Set ``job.state``/``start_step`` from the newest good checkpoint (damaged ones are moved
    aside), else from ``init_from`` or the fresh initialisation."""
    restored = _newest_good_checkpoint(job)
    if restored is None:
        moved = integrity.damaged_steps(job.workdir)
        if moved and not restart_from_scratch:
            raise NoGoodCheckpointError(
                f"every checkpoint of {job.workdir} is damaged (moved aside to "
                f"{os.path.join(job.workdir, integrity.DAMAGED_DIR)}: {', '.join(moved)}); "
                "to train again from step 0 in this workdir add --restart_from_scratch, or use "
                "a new --workdir")
        _init_from(job)
    else:
        state, meta, step = restored
        job.state, job.start_step = state.replace(tx=job.tx), step
        job.es = meta.get("early_stopping", job.es)
        if job.chief:
            log.info("%s", _resume_message(job.store.step_path(step), step, job.total_steps))
    if job.on_device is None and job.start_step != job.train_data_start:
        job.train_data = _train_data(job.config, job.build_data, job.start_step)
    job.state = job.dp.put_state(job.state)


def _resume_message(where: str, step: int, total_steps: int) -> str:
    """What a resumed run says: the step it continues from, or that nothing is left to train
    (a checkpoint at or past this config's ``total_steps``, e.g. after fewer epochs were set)."""
    if step < total_steps:
        return f"Resuming from {where} (step {step} of {total_steps})."
    past = "is this config's last step" if step == total_steps else (
        f"is past this config's total_steps {total_steps} (fewer epochs or steps than the run "
        "was trained with?)")
    return (f"Restored {where}: step {step} {past}; no training left, only the final "
            "evaluation runs.")


def _newest_good_checkpoint(job: _Job):
    """(state, meta, step) of the newest checkpoint that reads back and verifies, or None.

    Damaged steps are reported in one line each and moved to ``checkpoints_damaged/`` (by
    process 0; all processes then re-read the folder). A checkpoint of another model, class
    count or data is not damaged: it raises CheckpointMismatchError / DataChangedError.
    """
    store, dp = job.store, job.dp
    # Restored straight into this run's layout, whatever mesh wrote the checkpoint.
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                            job.state, dp.state_shardings(job.state))
    for step in sorted(store.all_steps(), reverse=True):
        where = store.step_path(step)
        try:
            meta = store.read_meta_checked(step)
            _check_same_run(job, meta, where, store.saved_structure(step), abstract)
            state, meta = store.restore_checked(step, abstract)
            return state, meta, step
        except integrity.DamagedCheckpointError as e:
            _sync("jaxvision_quarantine_before", step)
            if job.chief:
                moved = integrity.quarantine(job.workdir, where)
                log.warning("checkpoint %s is damaged (%s); moved aside to %s", where, e.reason,
                            moved)
            _sync("jaxvision_quarantine_after", step)
            store.reload()
    return None


def _check_same_run(job: _Job, meta: dict, where: str, saved_tree, abstract) -> None:
    ckpt_lib.check_compatible(meta, model_name=job.config.model.name,
                              num_classes=job.num_classes, where=where)
    saved = Counter((tuple(x.shape), str(x.dtype)) for x in jax.tree.leaves(saved_tree))
    wanted = Counter((tuple(x.shape), str(x.dtype)) for x in jax.tree.leaves(abstract))
    if saved != wanted:
        raise ckpt_lib.mismatch_error(where, ValueError(
            f"{saved.total()} saved arrays, {wanted.total()} in this train state (optimizer, EMA "
            f"or model changed?); saved only: {sorted((saved - wanted).elements())[:3]}, "
            f"this config only: {sorted((wanted - saved).elements())[:3]}"))
    saved_batch = meta.get("batch_size")
    if saved_batch is None:  # checkpoints before issue 15's sixth session: the run's config.json
        saved_batch = _config_json_batch_size(job.workdir)
    if saved_batch is not None and int(saved_batch) != int(job.config.batch_size):
        raise DataChangedError(
            f"the checkpoint in {where} was trained with batch_size {saved_batch}, this config "
            f"has {job.config.batch_size}: step k of a run is example k x batch_size of its "
            "data stream and point k of its schedule, so resuming with another batch size "
            f"would revisit or skip examples and move the schedule. Resume with "
            f"--config.batch_size={saved_batch}, or start a new --workdir (add "
            f"--config.init_from={ckpt_lib.run_dir_of(where)} to fine-tune from this run).")
    if job.data_id is not None:
        changed = data_identity.changes(meta.get(data_identity.META_KEY), job.data_id)
        if changed:
            raise DataChangedError(
                f"the data differs from what the checkpoint in {where} was trained on: "
                f"{'; '.join(changed)}. Resuming would train on other data under the same run; "
                "restore the data, or start a new --workdir (add "
                f"--config.init_from={ckpt_lib.run_dir_of(where)} to fine-tune from this run).")


def _config_json_batch_size(workdir: str) -> int | None:
    """``batch_size`` of the config.json the workdir's earlier run wrote (read before this run
    rewrites it); None when there is none or it cannot be read."""
    try:
        with open(os.path.join(workdir, "config.json")) as f:
            value = json.load(f).get("batch_size")
    except (OSError, ValueError, AttributeError):
        return None
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _init_from(job: _Job) -> None:
    config = job.config
    if not config.init_from:
        return
    pretrained, pre_meta = ckpt_lib.load_pretrained(config.init_from, config.init_from_step)
    variables = {"params": job.state.params, "batch_stats": job.state.batch_stats}
    variables["params"], reinit_p = ckpt_lib.merge_pretrained(
        variables["params"], pretrained["params"])
    variables["batch_stats"], reinit_b = ckpt_lib.merge_pretrained(
        variables["batch_stats"], pretrained["batch_stats"])
    job.reinitialized = reinit_p + reinit_b
    job.state = _fresh_state(config, variables, job.tx, job.state.rng)
    if job.chief:
        log.info(
            "init_from %s (model %s, step %s): %d tensors loaded, re-initialized %d: %s",
            config.init_from, pre_meta.get("model"), pre_meta.get("step"),
            len(jax.tree.leaves(variables["params"])) - len(reinit_p), len(job.reinitialized),
            "; ".join(job.reinitialized) or "none")


def _sync(name: str, step: int) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"{name}_{step}")


def _write_run_files(job: _Job) -> None:
    """config.json (resolved), env.json, init_from.json and the metric log (resumed at
    ``start_step``), on process 0."""
    config = job.config
    resolved = ml_collections.ConfigDict(config.to_dict())
    with resolved.unlocked():
        resolved.total_steps = job.total_steps
        resolved.model.num_classes = job.num_classes
    if job.chief:
        with open(os.path.join(job.workdir, "config.json"), "w") as f:
            f.write(resolved.to_json_best_effort(indent=2, sort_keys=True))
        with open(os.path.join(job.workdir, "env.json"), "w") as f:
            json.dump(environment(), f, indent=2)
        if job.reinitialized:
            with open(os.path.join(job.workdir, "init_from.json"), "w") as f:
                json.dump({"init_from": config.init_from, "reinitialized": job.reinitialized}, f,
                          indent=2)
    job.writer = MetricWriter(job.workdir, enabled=job.chief, resume_step=job.start_step)


# ---- run -------------------------------------------------------------------------------------
class _Saver:
    """Checkpoint saves that fail loudly and at once, with the free space in the message."""

    def __init__(self, job: _Job):
        self.job = job
        self.last_saved = job.start_step or None
        self._saved_here = False  # a save was started by this run (so its folder must appear)
        self._warned_space = False

    def save(self, step: int, state, eval_res: dict | None) -> None:
        if step == self.last_saved:
            return
        job = self.job
        view = job.dp.checkpoint_view(state)
        if not self._warned_space:
            self._warned_space = True
            _warn_if_little_space(job, view)
        try:
            job.store.save(step, view, job.meta(step, eval_res), metrics=eval_res)
        except Exception as e:  # noqa: BLE001 - every failure of the write is reported alike
            raise self._error(step, e) from e
        self.last_saved, self._saved_here = step, True

    def check(self, step: int) -> None:
        """Raise the failure of an asynchronous save at once (no waiting)."""
        try:
            self.job.store.check_for_errors(self.last_saved if self._saved_here else None)
        except Exception as e:  # noqa: BLE001
            raise self._error(self.last_saved or step, e) from e

    def commit(self, step: int) -> None:
        """Wait until every save has been written (before a stop)."""
        try:
            self.job.store.wait()
        except Exception as e:  # noqa: BLE001
            raise self._error(step, e) from e

    def _error(self, step: int, e: Exception) -> CheckpointSaveError:
        good = [s for s in self.job.store.all_steps() if s != step]
        kept = f"checkpoint {max(good)} is intact" if good else "no earlier checkpoint exists"
        return CheckpointSaveError(
            f"saving the checkpoint of step {step} in {self.job.workdir} failed "
            f"({ckpt_lib._first_line(e)}); {_free_space(self.job.workdir)} free there; {kept}. "
            "Free space (or fix permissions/quota) and rerun the same command to resume.")


def _free_space(path: str) -> str:
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        return "unknown space"
    return f"{free / 2**20:.1f} MiB"


def _warn_if_little_space(job: _Job, view) -> None:
    need = sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(view))
    try:
        free = shutil.disk_usage(job.workdir).free
    except OSError:
        return
    if job.chief and free < 2 * need:
        log.warning("only %s free in %s, less than two checkpoints (%.1f MiB each): saves may "
                    "fail", _free_space(job.workdir), job.workdir, need / 2**20)


def _run(job: _Job, signals: preemption.StopSignals, on_evaluate: OnEvaluate | None) -> dict:
    """Train from ``job.start_step`` to ``total_steps``: log, evaluate, checkpoint; stop early on a
    signal, ``on_evaluate`` or early stopping. Returns the metrics dict (see train_and_evaluate)."""
    config, dp, writer = job.config, job.dp, job.writer
    saver = _Saver(job)
    state, step = job.state, job.start_step
    final = {"step": step}
    pending = []
    t_last, step_last = time.perf_counter(), step
    # The bar counts finished steps (jaxvision.training.progress), not dispatched ones.
    pbar = progress.StepProgress(job.total_steps, step, enabled=job.chief
                                 and config.progress_bar and step < job.total_steps)
    on_device = job.on_device
    it = iter(job.train_data) if on_device is None else None
    try:
        while step < job.total_steps:
            if on_device is not None:  # a chunk of steps in one dispatch
                n = on_device.chunk_length(step, job.total_steps,
                                           evaluating=job.evaluate is not None)
                state, m = on_device.run(state, n)
            else:
                n = 1
                state, m = job.train_step(state, dp.put_batch(next(it)))
            pending.append(m)
            step += n
            pbar.dispatched(step, m)
            last = step == job.total_steps
            do_eval = job.evaluate is not None and (
                last or (config.eval_every_steps and step % config.eval_every_steps == 0))
            do_ckpt = last or (config.checkpoint_every_steps
                               and step % config.checkpoint_every_steps == 0)
            if pending and (step % config.log_every_steps == 0 or do_eval or do_ckpt):
                scalars = _log_train(job, pending, step, saver, t_last, step_last, pbar)
                final.update(scalars)
                pending = []
                saver.check(step)
                t_last, step_last = time.perf_counter(), step
            eval_res, stop = None, None
            if do_eval:
                eval_res = job.evaluate(state)
                writer.write(step, eval_res)
                final.update(eval_res)
                if pbar.enabled:
                    pbar.write(f"step {step}: " + ", ".join(
                        f"{k[4:]}={v:.4f}" for k, v in eval_res.items()))
                asked = _ask_on_evaluate(on_evaluate, step, eval_res)
                early = _early_stopping(config, job.es, eval_res)
                if early:
                    if job.chief:
                        log.info("Early stopping at step %d: %s", step, early)
                    final["early_stopped"] = True
                stop = "early_stopping" if early else asked
            stop = stop or signals.agreed(step)
            if do_ckpt or eval_res is not None or stop:
                saver.save(step, state, eval_res)
            if do_eval or do_ckpt:
                t_last = time.perf_counter()  # images/s counts training time only
            if stop:
                saver.commit(step)
                if stop != "early_stopping":
                    final["stopped"] = stop
                break
        if step == job.start_step and job.evaluate is not None and step >= job.total_steps:
            final.update(job.evaluate(state))  # already finished: report the final metrics again
        saver.commit(step)  # a failure of the last save is reported, not lost at exit
        saver.check(step)
    finally:
        pbar.close()
    job.state = state
    final["step"] = step
    return final


def _log_train(job: _Job, pending: list, step: int, saver: _Saver, t_last: float,
               step_last: int, pbar) -> dict:
    """Fetch the accumulated step metrics (the only host sync between log steps), stop on a
    non-finite loss, write and return the train scalars."""
    host = [job.dp.host_value(x) for x in pending]
    pbar.synced(step)
    # Per-step metrics are scalars, per-chunk ones (device path) vectors: the mean of all.
    scalars = {f"train/{k}": float(np.mean(np.concatenate([np.ravel(h[k]) for h in host])))
               for k in host[0]}
    # NaN inputs can hide behind ReLU (XLA's max(NaN, 0) = 0) and leave the loss finite: the
    # gradient norm shows them. With float16 loss scaling non-finite gradients are expected and
    # skipped, so only the loss counts there.
    watched = ("loss",) if "skipped" in host[0] else ("loss", "grad_norm")
    if not all(np.isfinite(h[k]).all() for h in host for k in watched):
        raise TrainingDivergedError(_bad_loss_message(step, saver.last_saved, job.workdir))
    scalars["train/images_per_sec"] = (
        (step - step_last) * job.config.batch_size / max(time.perf_counter() - t_last, 1e-9))
    # Epochs of training examples seen (exact also when a batch is not a divisor of the split).
    scalars["train/epoch"] = step * job.config.batch_size / job.info.num_examples
    job.writer.write(step, scalars)
    if pbar.bar is not None:
        pbar.set_postfix(loss=f"{scalars['train/loss']:.4f}",
                         img_s=f"{scalars['train/images_per_sec']:.0f}", refresh=False)
    return scalars


def _ask_on_evaluate(on_evaluate: OnEvaluate | None, step: int, eval_res: dict) -> str | None:
    """'on_evaluate' when the hook (called on process 0) asks to stop; every process agrees."""
    if on_evaluate is None:
        return None
    wanted = bool(on_evaluate(step, dict(eval_res))) if is_chief() else False
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        wanted = bool(multihost_utils.broadcast_one_to_all(np.int32(wanted)))
    return "on_evaluate" if wanted else None


# ---- report ----------------------------------------------------------------------------------
def _report(job: _Job, step: int) -> dict:
    """The held-out test split, read once at the end so it never steers training."""
    test_split = _test_split(job.config, job.eval_split, default_data=job.default_data)
    if job.evaluate is None or not test_split:
        return {}
    test_res = job.evaluate(job.state, test_split, "test")
    job.writer.write(step, test_res)
    if job.chief:
        log.info("step %d, %s split: %s", step, test_split, ", ".join(
            f"{k[5:]}={v:.4f}" for k, v in test_res.items()))
    return test_res


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


def _class_weights(config):
    """Per-class loss weights (K,) when ``data.class_weighting`` asks for them, else None."""
    scheme = config.data.get("class_weighting", "none")
    if not scheme or scheme == "none":
        return None
    from jaxvision import data

    return np.asarray(data.class_weights(config.data), np.float32)
