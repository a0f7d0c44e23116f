"""Test session setup: 8 simulated CPU devices and TensorFlow kept off any GPU.

XLA_FLAGS must be set before jax is imported, which is why it lives here.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # TF and JAX stay on the CPU in tests
os.environ.setdefault("MPLBACKEND", "Agg")
# The commands run by tests keep JAX's persistent compilation cache off (hermetic, no ~/.cache).
os.environ.setdefault("JAXVISION_COMPILATION_CACHE", "none")
