"""Studies built on jaxvision, one sub-folder each (e.g. ``xla_cpu_conv``). Tools users need live
in the package: hyper-parameter search is ``python -m jaxvision.sweep``."""
