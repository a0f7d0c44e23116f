"""Studies built on jaxvision: hyper-parameter sweeps (``python -m experiments.sweep``) and
one-off investigations in sub-folders."""
