"""jaxvision: image classification in JAX/Flax (CNNs, Vision Transformers, hybrids)."""

__version__ = "0.1.0"
