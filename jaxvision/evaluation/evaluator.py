"""Evaluate a trained run on a split: logits over a device mesh, metrics, calibration, plots.

The library side of ``python -m jaxvision.evaluate``::

    run = jaxvision.training.checkpoints.load_run(workdir, "best")
    result = evaluate_run(run, "test", calibrate=True, out_dir=f"{workdir}/eval/test")

``run`` is anything with ``config`` (``config.data`` for ``jaxvision.data.build``), ``model``
(Linen module), ``variables`` and optionally ``step`` and ``class_names``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxvision.evaluation import calibration as calibration_lib
from jaxvision.evaluation import metrics as metrics_lib
from jaxvision.evaluation import report as report_lib

DEFAULT_BATCH_SIZE = 256


def parse_checkpoint(value: str | int) -> str | int:
    """'latest' | 'best' | STEP (command-line text) -> what ``load_run`` takes."""
    if isinstance(value, int):
        return value
    v = str(value).strip().lower()
    if v in ("latest", "best"):
        return v
    if v.isdigit():
        return int(v)
    raise ValueError(f"checkpoint must be 'latest', 'best' or a step number, got {value!r}")


def robustness_options(attack: str = "none", eps: float = 8 / 255, steps: int = 10,
                       norm: str = "linf", corruptions=None, severities=(1, 3, 5)
                       ) -> dict[str, Any] | None:
    """Command-line robustness settings -> keyword options of
    ``jaxvision.robustness.evaluate_robustness`` (None when neither an attack nor corruptions are
    asked for). ``corruptions``: None/[] = none, ['all'] = every one, else the names."""
    if attack not in ("none", "fgsm", "pgd"):
        raise ValueError(f"attack must be 'none', 'fgsm' or 'pgd', got {attack!r}")
    if attack == "none" and not corruptions:
        return None
    opts: dict[str, Any] = {"attack": None if attack == "none" else attack, "eps": float(eps),
                            "steps": int(steps), "norm": norm}
    if not corruptions:
        opts["corruptions"] = ()
    elif [c.lower() for c in corruptions] != ["all"]:
        opts["corruptions"] = tuple(corruptions)
    try:
        opts["severities"] = tuple(int(s) for s in severities)
    except ValueError as e:
        raise ValueError(f"severities must be integers in 1..5, got {severities}") from e
    return opts


def _mesh() -> Mesh:
    return Mesh(np.asarray(jax.devices()), ("data",))


def make_logits_fn(model):
    """Jitted ``(variables, images) -> float32 logits`` in inference mode."""

    @jax.jit
    def logits_fn(variables, images):
        out = model.apply(variables, images, train=False)
        return jnp.asarray(out, jnp.float32)

    return logits_fn


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
    if x.shape[0] == rows:
        return x
    pad = np.zeros((rows - x.shape[0],) + x.shape[1:], x.dtype)
    return np.concatenate([x, pad], axis=0)


def iterate_logits(run, pipeline: Iterable[Mapping[str, np.ndarray]], *, mesh: Mesh | None = None):
    """Yield ``(logits, labels, mask)`` per batch, the batch sharded over the mesh's 'data' axis.

    Each element of ``pipeline`` is this process's part of a global batch (``image`` (B, H, W, C)
    float, ``label`` (B,), optional ``mask`` (B,)). Rows are padded (mask False) to a multiple of
    the local device count so any batch size shards. The yielded arrays are global jax arrays.
    """
    mesh = mesh or _mesh()
    data_sharding = NamedSharding(mesh, P("data"))
    variables = jax.device_put(run.variables, NamedSharding(mesh, P()))
    logits_fn = make_logits_fn(run.model)
    n_local = len([d for d in mesh.devices.flat if d.process_index == jax.process_index()])
    for batch in pipeline:
        images = np.asarray(batch["image"])
        labels = np.asarray(batch["label"])
        if labels.ndim != 1:
            raise ValueError(
                f"evaluation needs integer labels of shape (B,), got {labels.shape}; build the "
                "pipeline with train=False (no mixup/cutmix soft labels)"
            )
        mask = np.asarray(batch.get("mask", np.ones(labels.shape, bool)), bool)
        rows = -(-images.shape[0] // n_local) * n_local
        local = (_pad_rows(images, rows), _pad_rows(labels.astype(np.int32), rows),
                 _pad_rows(mask, rows))
        images_g, labels_g, mask_g = (
            jax.make_array_from_process_local_data(data_sharding, a) for a in local)
        yield logits_fn(variables, images_g), labels_g, mask_g


def evaluate_pipeline(run, pipeline, num_classes: int, *, num_bins: int = 15,
                      keep_examples: bool = True, mesh: Mesh | None = None
                      ) -> metrics_lib.Accumulator:
    """One pass over ``pipeline``; returns the filled ``metrics.Accumulator``."""
    acc = metrics_lib.Accumulator(num_classes, num_bins, keep_examples=keep_examples)
    for logits, labels, mask in iterate_logits(run, pipeline, mesh=mesh):
        if logits.shape[-1] != num_classes:
            raise ValueError(
                f"the model outputs {logits.shape[-1]} classes but the data has {num_classes}; "
                "evaluate with the dataset the run was trained on (config.data)"
            )
        acc.update(logits, labels, mask)
    return acc


def _class_names(run, info, num_classes: int) -> list[str]:
    names = getattr(run, "class_names", None) or getattr(info, "class_names", None)
    if names is None or len(names) != num_classes:
        return [str(i) for i in range(num_classes)]
    return [str(n) for n in names]


def _check_same_labels(run, info) -> None:
    """Refuse data whose label indices mean other classes than the run's head (e.g. class folders
    renamed since training: sorted names give indices, so 'hound' would be scored as 'cat').

    Runs without recorded names, or with the default index names ('0', '1', ...), are not checked.
    """
    trained = [str(n) for n in (getattr(run, "class_names", None) or ())]
    data = [str(n) for n in (getattr(info, "class_names", None) or ())]
    if not trained or not data or trained == [str(i) for i in range(len(trained))]:
        return
    if trained != data:
        only_run = sorted(set(trained) - set(data))[:5]
        only_data = sorted(set(data) - set(trained))[:5]
        raise ValueError(
            f"the data's classes differ from the ones the run was trained on (run only: "
            f"{only_run or 'none'}; data only: {only_data or 'none'}; {len(trained)} vs "
            f"{len(data)} classes), so its labels would be scored against the wrong outputs. "
            "Restore the class folders, or evaluate on data with the run's classes.")


def _build(run, split: str, batch_size: int, *, arrays_ok: bool = True):
    from jaxvision import data

    # A bundled dataset's split is read as NumPy arrays (the same model inputs, bit for bit):
    # no TensorFlow to import, no tf.data to build for a few thousand small images. Only the
    # order of the examples differs, so a pass whose random draws follow the batches (noise
    # corruptions, PGD starts: ``arrays_ok=False``) keeps tf.data and its published numbers.
    if arrays_ok:
        arrays = data.eval_arrays.build(run.config.data, split, global_batch_size=batch_size)
        if arrays is not None:
            return arrays
    return data.build(run.config.data, split, global_batch_size=batch_size, train=False)


def _num_classes(run, info) -> int:
    k = getattr(info, "num_classes", None)
    if k is None:
        k = run.config.model.num_classes
    return int(k)


def evaluate_run(
    run,
    split: str = "test",
    *,
    batch_size: int | None = None,
    num_bins: int = 15,
    calibrate: bool = False,
    calibration_split: str | None = None,
    out_dir: str | None = None,
    plots: bool = True,
    robustness: dict[str, Any] | None = None,
    pipeline=None,
    calibration_pipeline=None,
) -> dict[str, Any]:
    """Metrics of ``run`` on ``split`` (and optionally calibration, robustness, files).

    Args:
      run: a loaded run (``jaxvision.training.checkpoints.load_run``).
      split: the split given to ``jaxvision.data.build``.
      batch_size: global evaluation batch (default: ``config.eval_batch_size``, else 256).
      num_bins: confidence bins for the calibration metrics.
      calibrate: fit a temperature on ``calibration_split`` and add ``result['calibration']`` =
        {temperature, fit_split, val_nll_before, val_nll_after, after: metrics of ``split`` at T}.
      calibration_split: default ``config.data.eval_split`` (the run's validation split; 'auto'
        = validation if the dataset has one). Must differ from ``split``.
      out_dir: if given, write ``metrics.json`` and (with ``plots``) the PNG plots there.
      robustness: keyword options for ``jaxvision.robustness.evaluate_robustness``; its result is
        stored under ``result['robustness']``.
      pipeline / calibration_pipeline: ready-made pipelines instead of building them from
        ``run.config.data`` (anything iterable with an ``info``).

    Returns: ``classification_metrics`` keys plus ``split``, ``step``, ``class_names``,
      ``seconds``, and ``calibration`` / ``robustness`` / ``plots`` when asked for.
    """
    if batch_size is None:
        batch_size = _config_get(run.config, "eval_batch_size") or DEFAULT_BATCH_SIZE
    built = pipeline is None
    if built:
        pipeline = _build(run, split, batch_size, arrays_ok=robustness is None)
    info = getattr(pipeline, "info", None)
    if built:  # a caller's own pipeline maps its labels itself
        _check_same_labels(run, info)
    num_classes = _num_classes(run, info)
    class_names = _class_names(run, info, num_classes)
    split_name = getattr(info, "split", None) or split
    mesh = _mesh()
    if calibrate and calibration_pipeline is None:
        if calibration_split is None:
            calibration_split = _config_get(run.config.data, "eval_split") or "validation"
        calibration_pipeline = _build(run, calibration_split, batch_size)
    if calibrate:
        fit_split = _calibration_split(calibration_pipeline, calibration_split, split_name)

    start = time.perf_counter()
    acc = evaluate_pipeline(run, pipeline, num_classes, num_bins=num_bins, mesh=mesh)
    result = acc.result()
    result.update(split=split_name, step=_int_or_none(getattr(run, "step", None)),
                  class_names=class_names, seconds=time.perf_counter() - start)
    if calibrate:
        val = evaluate_pipeline(run, calibration_pipeline, num_classes, num_bins=num_bins,
                                mesh=mesh)
        result["calibration"] = _temperature_scaling(val, acc, fit_split, num_bins)
    if robustness is not None:
        from jaxvision import robustness as robustness_lib  # heavy; only when asked for

        # Evaluation pipelines are finite and re-iterable: the same batches, a second pass.
        result["robustness"] = robustness_lib.evaluate_robustness(run, pipeline, **robustness)
    if out_dir is not None:
        _write_outputs(result, class_names, out_dir, title=f"{split} (step {result['step']})",
                       plots=plots)
    return result


def _calibration_split(calibration_pipeline, calibration_split, split_name):
    """The name of the split the temperature is fitted on; ValueError when it is the evaluated
    split itself."""
    fit_split = getattr(getattr(calibration_pipeline, "info", None), "split", None)
    fit_split = fit_split or calibration_split
    if fit_split == split_name:
        raise ValueError(
            f"temperature scaling would be fitted on the split it is evaluated on "
            f"({split_name!r}), which hides miscalibration. Pass a different held-out split as "
            "calibration_split (--calibration_split), e.g. the validation split or a slice "
            "of the training data the run did not train on."
        )
    return fit_split


def _temperature_scaling(val, acc, fit_split, num_bins) -> dict[str, Any]:
    """``result['calibration']``: a temperature fitted on ``val``'s logits, and the metrics of
    ``acc``'s split at that temperature."""
    fit = calibration_lib.temperature_scale(val.logits, val.labels, None, acc.logits,
                                            acc.labels, None, num_bins=num_bins)
    return {
        "temperature": fit.temperature,
        "fit_split": fit_split,
        "val_nll_before": fit.val_nll_before,
        "val_nll_after": fit.val_nll_after,
        "after": fit.after,
    }


def _write_outputs(result, class_names, out_dir, *, title, plots):
    """The plots (when asked for) and metrics.json in ``out_dir``; stale plots of an earlier
    evaluation there are removed. Adds ``plots`` and ``metrics_json`` to ``result``."""
    if plots:
        from jaxvision.evaluation import plots as plots_lib  # matplotlib: only when drawing

        paths = plots_lib.write_all(result, class_names, out_dir, title=title)
        if "calibration" in result:
            cal = result["calibration"]
            paths["reliability_diagram_calibrated"] = plots_lib.reliability_diagram(
                cal["after"], os.path.join(out_dir, "reliability_diagram_calibrated.png"),
                f"{title}, T = {cal['temperature']:.3f}")
        result["plots"] = paths
    if jax.process_index() == 0:
        _remove_stale_plots(out_dir, set(result.get("plots", {}).values()))
        result["metrics_json"] = report_lib.write_json(
            result, os.path.join(out_dir, "metrics.json"))


# What ``plots.write_all`` and the calibrated diagram write into an evaluation folder.
PLOT_FILES = ("reliability_diagram.png", "confusion_matrix.png", "per_class.png",
              "reliability_diagram_calibrated.png")


def _remove_stale_plots(out_dir: str, written: set[str]) -> None:
    """Remove plots an earlier evaluation left in ``out_dir`` that this one did not redraw: next
    to a new metrics.json they would show another step's or checkpoint's numbers."""
    stale = [os.path.join(out_dir, n) for n in PLOT_FILES
             if os.path.join(out_dir, n) not in written and os.path.exists(os.path.join(out_dir, n))]
    for path in stale:
        os.remove(path)
    if stale:
        logging.getLogger(__name__).info(
            "removed %d plot(s) of an earlier evaluation from %s (draw them with --plots)",
            len(stale), out_dir)


def _config_get(config, key: str, default=None):
    try:
        value = config[key] if key in config else default
    except TypeError:
        value = getattr(config, key, default)
    return default if value is None else value


def _int_or_none(x) -> int | None:
    if x is None:
        return None
    try:
        return int(np.asarray(jax.device_get(x)))
    except (TypeError, ValueError):
        return None

