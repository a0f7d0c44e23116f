"""jaxvision.evaluation: accuracy and calibration metrics, temperature scaling, reports, plots.

* ``metrics``: streaming ``init_state / update_state / merge_states / finalize`` (jit-able,
  psum-able sufficient statistics), the host ``Accumulator`` and the one-shot
  ``classification_metrics(logits, labels, mask=None, num_bins=15)``.
* ``calibration``: ``fit_temperature``, ``temperature_scale`` (before/after metrics).
* ``plots``: reliability diagram + confidence histogram, confusion heatmap, per-class bars.
* ``report``: tables and metrics.json.
* ``evaluate_run(run, split, ...)`` and ``predict_files(run, paths, top_k)``: what the
  ``python -m jaxvision.evaluate`` / ``jaxvision.predict`` commands call.
"""

from jaxvision.evaluation import calibration, metrics, plots, report
from jaxvision.evaluation.calibration import fit_temperature, temperature_scale
from jaxvision.evaluation.evaluator import (
    evaluate_pipeline,
    evaluate_run,
    iterate_logits,
    parse_checkpoint,
    robustness_options,
)
from jaxvision.evaluation.metrics import Accumulator, classification_metrics
from jaxvision.evaluation.predictor import format_prediction, predict_files

__all__ = [
    "Accumulator",
    "calibration",
    "classification_metrics",
    "evaluate_pipeline",
    "evaluate_run",
    "fit_temperature",
    "format_prediction",
    "iterate_logits",
    "metrics",
    "parse_checkpoint",
    "plots",
    "predict_files",
    "report",
    "robustness_options",
    "temperature_scale",
]
