"""What each bundled dataset declares: image shape (H, W, C) and class names, readable without
importing TensorFlow (``predict`` and ``explain`` resolve a run's preprocessing from these; the
TFDS builders in ``jaxvision.data.bundled`` declare their features from them)."""

__all__ = ["CLASS_NAMES", "SHAPES"]

_DIGITS = tuple(str(i) for i in range(10))
SHAPES = {"mnist5k": (28, 28, 1), "digits": (8, 8, 1), "lfw_faces": (25, 25, 1)}
CLASS_NAMES = {"mnist5k": _DIGITS, "digits": _DIGITS, "lfw_faces": ("face", "not_face")}
