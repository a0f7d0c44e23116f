"""Test session setup: 8 simulated CPU devices and TensorFlow kept off any GPU.

XLA_FLAGS must be set before jax is imported, which is why it lives here.
"""

import os
import shutil
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # TF and JAX stay on the CPU in tests
os.environ.setdefault("MPLBACKEND", "Agg")
# The commands run by tests share one persistent compilation cache per test run, never ~/.cache:
# dozens of subprocesses compile the same LeNet steps, and a hit loads in milliseconds what takes
# seconds to compile. JAX keys entries by program, options, devices and versions, so a shared
# entry can only be a miss, never a wrong executable. xdist workers inherit the controller's
# variable, so all of them share its directory; the controller removes it at the end.
_OWN_CACHE = "JAXVISION_COMPILATION_CACHE" not in os.environ
if _OWN_CACHE:
    os.environ["JAXVISION_COMPILATION_CACHE"] = tempfile.mkdtemp(prefix="jaxvision-test-cache-")


def pytest_sessionfinish(session, exitstatus):
    if _OWN_CACHE and "PYTEST_XDIST_WORKER" not in os.environ:
        shutil.rmtree(os.environ["JAXVISION_COMPILATION_CACHE"], ignore_errors=True)
