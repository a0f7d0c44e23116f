"""jaxvision.evaluation."""
