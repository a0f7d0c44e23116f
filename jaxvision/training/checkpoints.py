"""Orbax checkpoints of training runs, fine-tuning initialisation, and ``load_run``.

Layout of ``<workdir>/checkpoints/<step>/``: item ``state`` (the TrainState as global arrays,
replicated or sharded as the run's mesh lays them out: step, params, batch_stats, opt_state,
ema_params, rng, loss_scale; restored onto any mesh by giving the target shardings) and item ``meta`` (JSON:
model name, num_classes, class_names, image_shape, step, the validation metrics of that step, early
stopping bookkeeping). Orbax writes each step to a temporary directory and renames it when complete,
so a killed run never leaves a half-written checkpoint; saves are asynchronous (training continues
while the previous checkpoint is written). The last ``keep`` checkpoints are kept, plus the best one
by ``best_metric`` among those saved with metrics.

The data position is the step itself: the training pipeline is a pure function of (seed, step), so
resuming rebuilds it with ``data.build(..., start_step=step)``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import traverse_util

from jaxvision.training import integrity, orbax_noise

CHECKPOINT_DIR = "checkpoints"


orbax_noise.install()  # one error line per failure, none of Orbax's by-products
_MODEL_KEYS_NOT_OVERRIDES = ("name", "num_classes")


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model being trained (architecture or class count)."""


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)


class CheckpointStore:
    """An Orbax CheckpointManager keeping the last ``keep`` steps and the best by ``best_metric``.

    All processes must create it and call ``save`` (Orbax coordinates the writes). A writable
    store removes the temporary folders of saves that never finished when it opens, so only the
    run holding the workdir lock may open one; ``read_only`` ones change nothing.
    """

    def __init__(self, directory: str, *, keep: int = 3, best_metric: str = "", best_mode: str = "max",
                 async_save: bool = True, read_only: bool = False, cleanup_tmp: bool = True):
        self.directory = os.path.abspath(directory)
        self.best_metric = best_metric
        policies = [ocp.checkpoint_managers.LatestN(n=max(1, keep))]
        best_fn = None
        if best_metric:
            def best_fn(m):
                return float(m[best_metric])

            policies.append(
                ocp.checkpoint_managers.BestN(
                    get_metric_fn=best_fn,
                    reverse=(best_mode == "min"),
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            best_fn=best_fn,
            best_mode=best_mode,
            preservation_policy=None if read_only else ocp.checkpoint_managers.AnyPreservationPolicy(policies),
            enable_async_checkpointing=async_save,
            create=not read_only,
            # A save cut short (a second Ctrl-C, kill -9) leaves <step>.orbax-checkpoint-tmp;
            # the run holding the workdir lock removes them (readers never write).
            cleanup_tmp_directories=cleanup_tmp and not read_only,
            read_only=read_only,
        )
        self.manager = ocp.CheckpointManager(
            self.directory,
            item_handlers={"state": ocp.StandardCheckpointHandler(),
                           "meta": ocp.JsonCheckpointHandler()},
            options=options,
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        return self.manager.best_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state, meta: dict, metrics: dict | None = None) -> None:
        """Save asynchronously (returns once the arrays are copied off the devices).

        ``meta`` is stored with the digest of ``state`` (see jaxvision.training.integrity). An
        error of an earlier asynchronous save is raised here (or by ``check_for_errors``).
        """
        if metrics is not None and self.best_metric and self.best_metric not in metrics:
            metrics = None
        meta = {**meta, integrity.DIGEST_KEY: integrity.tree_digest(state)}
        self.manager.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(_jsonable(meta))
            ),
            metrics=_jsonable(metrics) if metrics is not None else None,
            force=True,
        )

    def read_meta(self, step: int) -> dict:
        return self.manager.restore(int(step), args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

    def restore(self, step: int, abstract_state):
        """(state, meta) of ``step``; ``abstract_state`` gives structure, shapes and shardings."""
        r = self.manager.restore(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
            ),
        )
        return r.state, r.meta

    def restore_raw(self, step: int):
        """(state as nested dicts of arrays on one local device, meta), without knowing the
        structure; works whatever the devices/processes of the run that wrote it."""
        tree = self.manager.item_metadata(int(step)).state.tree
        dev = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=dev), tree)
        r = self.manager.restore(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
            ),
        )
        return r.state, r.meta

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def check_for_errors(self, step: int | None = None) -> None:
        """Raise the error of a failed asynchronous save, if any (cheap; no waiting).

        ``step``: the last step saved; once no save is in progress its folder must exist.
        """
        self.manager.check_for_errors()
        if orbax_noise.BACKGROUND_FAILURES:
            first = orbax_noise.BACKGROUND_FAILURES[0]
            orbax_noise.BACKGROUND_FAILURES.clear()
            raise first
        if (step is not None and not self.manager.is_saving_in_progress()
                and not os.path.isdir(self.step_path(step))):
            raise OSError(f"the folder of step {step} was not written")

    def reload(self) -> None:
        """Re-read the step folders (after some were moved aside)."""
        self.manager.reload()

    def step_path(self, step: int) -> str:
        return os.path.join(self.directory, str(int(step)))

    def read_meta_checked(self, step: int) -> dict:
        """``read_meta``, with an incomplete step or an unreadable meta item reported as
        DamagedCheckpointError."""
        integrity.check_complete(step, self.step_path(step))
        try:
            return self.read_meta(step)
        except Exception as e:  # noqa: BLE001 - any failure to read means the step is damaged
            raise integrity.DamagedCheckpointError(step, _first_line(e)) from e

    def restore_checked(self, step: int, abstract_state=None):
        """(state, meta) of ``step``, trusted: a read failure or a digest mismatch raises
        DamagedCheckpointError. ``abstract_state`` None restores raw dicts (``restore_raw``)."""
        meta = self.read_meta_checked(step)
        try:
            if abstract_state is None:
                state, _ = self.restore_raw(step)
            else:
                state, _ = self.restore(step, abstract_state)
        except Exception as e:  # noqa: BLE001 - the structure was checked before; see callers
            raise integrity.DamagedCheckpointError(step, _first_line(e)) from e
        integrity.verify(step, state, meta)
        return state, meta

    def saved_structure(self, step: int):
        """The state's tree of ShapeDtypeStruct-like metadata, or DamagedCheckpointError."""
        try:
            return self.manager.item_metadata(int(step)).state.tree
        except Exception as e:  # noqa: BLE001
            raise integrity.DamagedCheckpointError(step, _first_line(e)) from e

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _first_line(e: Exception) -> str:
    """``Type: first line of the message`` (TensorStore's long spec dump cut off); a failed
    array read is named as such, with the array and TensorStore's reason."""
    unreadable = integrity.unreadable_data_reason(e)
    if unreadable:
        return unreadable
    text = str(e).strip().splitlines()
    code = re.search(r"os_error_code='?(\d+)", str(e))  # TensorStore's wrapped OS errors
    if code:
        return f"{type(e).__name__}: {os.strerror(int(code.group(1)))} (errno {code.group(1)})"
    first = text[0].split(" See full TensorStore details")[0][:300] if text else ""
    return f"{type(e).__name__}: {first}"


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray | jax.Array):
        return _jsonable(np.asarray(x).tolist())
    if isinstance(x, np.generic):
        return x.item()
    return x


def check_compatible(meta: dict, *, model_name: str, num_classes: int, where: str) -> None:
    """Raise CheckpointMismatchError when ``meta`` was written for another model or class count."""
    problems = []
    if meta.get("model") != model_name:
        problems.append(f"model {meta.get('model')!r} (this config: {model_name!r})")
    if int(meta.get("num_classes", -1)) != int(num_classes):
        problems.append(f"{meta.get('num_classes')} classes (this config: {num_classes})")
    if problems:
        raise CheckpointMismatchError(
            f"The checkpoint in {where} was written for {' and '.join(problems)}, so it cannot be "
            "resumed with this config. Use a new --workdir, or keep this one and fine-tune from the "
            f"old run with --config.init_from={run_dir_of(where)}."
        )


def run_dir_of(step_path: str) -> str:
    """The run directory (what --config.init_from takes) of ``<run>/checkpoints/<step>``."""
    return os.path.dirname(os.path.dirname(os.path.abspath(step_path)))


def mismatch_error(where: str, err: Exception) -> CheckpointMismatchError:
    return CheckpointMismatchError(
        f"The checkpoint in {where} does not match this model's variables (another architecture, "
        f"model option or class count?): {str(err).splitlines()[0][:300]}. Use a new --workdir, or "
        f"fine-tune from it with --config.init_from={run_dir_of(where)}."
    )


# ---- fine-tuning ---------------------------------------------------------------------------
def merge_pretrained(init_tree, pretrained_tree) -> tuple[Any, list[str]]:
    """Take every leaf of ``pretrained_tree`` whose path and shape match ``init_tree``.

    Returns (merged tree, list of 'path: reason' for the leaves kept from ``init_tree``).
    """
    init_flat = traverse_util.flatten_dict(_to_dict(init_tree), sep="/")
    pre_flat = traverse_util.flatten_dict(_to_dict(pretrained_tree or {}), sep="/")
    merged, reinit = {}, []
    for k, v in init_flat.items():
        p = pre_flat.get(k)
        if p is None:
            reinit.append(f"{k}: not in the checkpoint")
            merged[k] = v
        elif tuple(np.shape(p)) != tuple(np.shape(v)):
            resized = _resize_pos_embed(k, p, v)
            if resized is not None:  # a ViT fine-tuned at another resolution keeps its positions
                merged[k] = resized
                logging.getLogger(__name__).warning("init_from: %s interpolated %s -> %s", k, np.shape(p), np.shape(v))
                continue
            reinit.append(f"{k}: shape {tuple(np.shape(p))} -> {tuple(np.shape(v))}")
            merged[k] = v
        else:
            merged[k] = jnp.asarray(p, dtype=v.dtype)
    return traverse_util.unflatten_dict(merged, sep="/"), reinit


def _resize_pos_embed(path: str, pre, init):
    """``pre`` interpolated to ``init``'s grid when both are learned ViT position embeddings
    (1, prefix + h*w, D) with the same width and prefix tokens; else None."""
    from jaxvision.layers import patch

    if not path.endswith(f"{patch.POS_EMBED_MODULE}/{patch.POS_EMBED_PARAM}"):
        return None
    if np.ndim(pre) != 3 or np.shape(pre)[-1] != np.shape(init)[-1]:
        return None

    def split(n):  # (prefix tokens, grid side) of a square grid with 0 or 1 prefix tokens
        for prefix in (0, 1):
            side = math.isqrt(n - prefix)
            if side * side == n - prefix:
                return prefix, side
        return None, None

    p_pre, _ = split(np.shape(pre)[1])
    p_new, side = split(np.shape(init)[1])
    if p_pre is None or p_pre != p_new:
        return None
    out = patch.resize_position_embedding(jnp.asarray(pre, jnp.float32), (side, side),
                                          num_prefix_tokens=p_pre)
    return jnp.asarray(out, dtype=init.dtype).reshape(np.shape(init))


def _to_dict(tree):
    from flax.core import unfreeze

    return unfreeze(tree) if tree is not None else {}


def load_pretrained(workdir: str, step: int | str | None = None) -> tuple[dict, dict]:
    """(variables {'params', 'batch_stats'}, meta) of another run (EMA params if it kept EMA).

    ``step`` None or 'latest' takes the newest checkpoint whose digest verifies.
    """
    store = _open_read_only(workdir)
    try:
        raw, meta, _ = _restore_trusted(store, "latest" if step is None else step, workdir)
    finally:
        store.close()
    params = raw.get("ema_params") or raw["params"]
    return {"params": params, "batch_stats": raw.get("batch_stats") or {}}, meta


def _open_read_only(workdir: str) -> CheckpointStore:
    d = checkpoint_dir(workdir)
    if not os.path.isdir(d):
        hint = ""
        if os.path.basename(os.path.normpath(workdir)) == CHECKPOINT_DIR:
            hint = f" Give the run directory itself: {os.path.dirname(os.path.abspath(workdir))}."
        raise FileNotFoundError(
            f"No checkpoints in {d}: {workdir!r} is not a jaxvision training workdir (expected "
            f"config.json and checkpoints/ written by python -m jaxvision.train).{hint}"
        )
    best = ""
    cfg_path = os.path.join(os.path.abspath(workdir), "config.json")
    mode = "max"
    if os.path.exists(cfg_path):
        with open(cfg_path) as f:
            cfg = json.load(f)
        best = f"val/{cfg['best_metric']}" if cfg.get("best_metric") else ""
        mode = cfg.get("best_mode") or "max"
    return CheckpointStore(d, best_metric=best, best_mode=mode, async_save=False, read_only=True)


def _pick_step(store: CheckpointStore, which, workdir: str) -> int:
    steps = store.all_steps()
    if not steps:
        raise FileNotFoundError(_no_checkpoint_message(workdir))
    if which == "latest":
        return store.latest_step()
    if which == "best":
        s = store.best_step()
        return s if s is not None else store.latest_step()
    try:
        step = int(which)
    except (TypeError, ValueError):
        raise ValueError(f"which={which!r}: use 'latest', 'best' or a step number.") from None
    if step not in steps:
        raise FileNotFoundError(f"No checkpoint for step {step} in {workdir}; available: {sorted(steps)}.")
    return step


def _no_checkpoint_message(workdir: str) -> str:
    """Why ``workdir`` has no checkpoint to read: not saved yet, or every one moved aside."""
    moved = integrity.damaged_steps(workdir)
    if not moved:
        return f"{checkpoint_dir(workdir)} holds no finished checkpoint yet."
    damaged_dir = os.path.join(os.path.abspath(workdir), integrity.DAMAGED_DIR)
    return (f"{checkpoint_dir(workdir)} holds no checkpoint: training found all {len(moved)} damaged "
            f"and moved them to {damaged_dir} ({', '.join(moved)}). Train again in this workdir "
            "with --restart_from_scratch, or use another run's --workdir.")


def _restore_trusted(store: CheckpointStore, which, workdir: str):
    """(raw state, meta, step) of ``which``; with 'latest', damaged steps are skipped, each
    reported in one warning line that names the checkpoint used instead.

    Readers leave the workdir as it is (a training run may hold it): moving damaged steps to
    ``checkpoints_damaged/`` is the training run's job.
    """
    step = _pick_step(store, which, workdir)
    candidates = [step]
    if which == "latest":
        candidates = sorted((s for s in store.all_steps() if s <= step), reverse=True)
    damaged = []
    for s in candidates:
        try:
            raw, meta = store.restore_checked(s)
        except integrity.DamagedCheckpointError as e:
            damaged.append((s, e.reason))
            continue
        for bad, reason in damaged:
            logging.getLogger("jaxvision").warning(
                "skipping %s: %s; using checkpoint %d instead", store.step_path(bad), reason, s)
        return raw, meta, s
    raise FileNotFoundError(
        f"no usable checkpoint in {checkpoint_dir(workdir)}: damaged: "
        f"{'; '.join(f'{s} ({reason})' for s, reason in damaged)}. "
        "Rerun training in that workdir to move them aside to "
        f"{integrity.DAMAGED_DIR}/ (and, if none is good, --restart_from_scratch to train again)."
    )


# ---- load_run ------------------------------------------------------------------------------
@dataclasses.dataclass
class Run:
    """A trained model ready to evaluate.

    config: the run's resolved ConfigDict (from config.json).
    model: Linen module built with compute dtype float32 (no cross-device BatchNorm).
    variables: {'params', 'batch_stats'}; the EMA parameters when the run kept an EMA.
    step: the checkpoint's step.
    class_names: list[str] of the training data's classes.
    image_shape: (H, W, C) the model was trained on.
    metrics: validation metrics saved with that checkpoint ({} when none).
    """

    config: ml_collections.ConfigDict
    model: nn.Module
    variables: dict
    step: int
    class_names: list[str]
    image_shape: tuple[int, int, int] | None = None
    metrics: dict = dataclasses.field(default_factory=dict)


def model_overrides(config) -> dict:
    """Keys of ``config.model`` other than name/num_classes (passed to models.create)."""
    return {k: v for k, v in dict(config.model).items() if k not in _MODEL_KEYS_NOT_OVERRIDES}


def load_run(workdir: str, which: str | int = "latest") -> Run:
    """Load a training run: ``which`` is 'latest', 'best' (by the run's best_metric) or a step.

    Every checkpoint is verified against the digest saved with it; with 'latest' a damaged one is
    reported (one warning line) and the newest good one is used. Raises FileNotFoundError when
    the workdir holds no (usable) checkpoint, ValueError for a bad ``which``.
    """
    from jaxvision import models

    cfg_path = os.path.join(os.path.abspath(workdir), "config.json")
    if not os.path.exists(cfg_path):
        raise FileNotFoundError(
            f"{cfg_path} not found: {workdir!r} is not a jaxvision training workdir."
        )
    with open(cfg_path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    store = _open_read_only(workdir)
    try:
        raw, meta, step = _restore_trusted(store, which, workdir)
        try:
            metrics = store.manager.metrics(step) or {}
        except Exception:  # noqa: BLE001 - metrics are optional
            metrics = {}
    finally:
        store.close()
    overrides = model_overrides(config)
    overrides.pop("bn_axis_name", None)
    model = models.create(meta["model"], num_classes=int(meta["num_classes"]), dtype=jnp.float32,
                          **overrides)
    params = raw.get("ema_params") or raw["params"]
    variables = {
        "params": jax.tree.map(jnp.asarray, params),
        "batch_stats": jax.tree.map(jnp.asarray, raw.get("batch_stats") or {}),
    }
    logging.info("load_run: %s step %d", workdir, step)
    return Run(
        config=config,
        model=model,
        variables=variables,
        step=int(step),
        class_names=list(meta.get("class_names") or []),
        image_shape=tuple(meta["image_shape"]) if meta.get("image_shape") else None,
        metrics=dict(metrics),
    )
