"""What the oneDNN op tests share: the platform marker, the one-device seam and the jaxpr probe.

The test session has 8 simulated CPU devices (tests/conftest.py), where jaxvision keeps the
pure-JAX forms; ``one_device`` makes this process count as the one-device process a CPU user
runs, so that the native handlers are traced."""

import os
import sys

import jax
import pytest

from jaxvision.layers import onednn_build

needs_onednn = pytest.mark.skipif(
    not (sys.platform == "linux" and os.uname().machine == "x86_64"),
    reason="the oneDNN wheels jaxvision depends on are x86-64 Linux only")

real_single_device = onednn_build.single_device


@pytest.fixture
def one_device(monkeypatch):
    monkeypatch.setattr(onednn_build, "single_device", lambda: True)


def several_devices(monkeypatch, n=8):
    """The real device check, with ``jax.device_count()`` reporting ``n``."""
    monkeypatch.setattr(onednn_build, "single_device", real_single_device)
    monkeypatch.setattr(jax, "device_count", lambda: n)


def jaxpr_text(f, *args) -> str:
    """The jaxpr of ``f(*args)`` as text, traced afresh: make_jaxpr caches traces per function,
    and the lowering (a global) is not part of that cache's key."""
    return str(jax.make_jaxpr(lambda *a: f(*a))(*args))
