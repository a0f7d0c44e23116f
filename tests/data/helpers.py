"""Helpers shared by the data tests."""

from jaxvision import data


def data_config(name, data_dir, **kw):
    """``config.data`` for dataset ``name`` in ``data_dir`` with the keys ``kw`` set."""
    c = data.default_config()
    c.name, c.data_dir = name, data_dir
    for k, v in kw.items():
        c[k] = v
    return c
