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

import lazy_loader as _lazy

# Lazy: predict needs neither matplotlib (plots) nor the calibration fit; each loads on first use.
__getattr__, __dir__, _ = _lazy.attach(
    __name__,
    submodules=["calibration", "metrics", "plots", "report"],
    submod_attrs={
        "calibration": ["fit_temperature", "temperature_scale"],
        "evaluator": ["evaluate_pipeline", "evaluate_run", "iterate_logits", "parse_checkpoint",
                      "robustness_options"],
        "metrics": ["Accumulator", "classification_metrics"],
        "predictor": ["format_prediction", "predict_files"],
    },
)

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
