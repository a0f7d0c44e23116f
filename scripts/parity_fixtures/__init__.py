"""Builders of tiny reference models (torchvision / timm) for ``scripts/make_parity_fixtures.py``,
one module per family; each builder returns a ``common.Fixture``."""
