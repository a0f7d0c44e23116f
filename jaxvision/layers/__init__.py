"""jaxvision.layers."""
