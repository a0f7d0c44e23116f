"""Input sizes a model with fixed downsampling accepts, and the one error that names valid ones.

Models whose stages must halve a map evenly (CoAtNet's MBConv shortcut pools with floor, its
conv with ceil) or cut it into fixed windows (MaxViT) accept only some input sides. They check
the side before tracing and refuse with a message that suggests the nearest sides the same
check accepts, so a suggestion can never fail in turn.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["check_input_size", "nearest_valid_sizes"]


def nearest_valid_sizes(size: int, is_valid: Callable[[int], bool], count: int = 2,
                        limit: int = 4096) -> list[int]:
    """Up to ``count`` sides nearest ``size`` (ties: the smaller first) with ``is_valid(side)``,
    searched in [1, ``limit``], ascending."""
    found: list[int] = []
    for d in range(limit):
        for s in (size - d, size + d) if d else (size,):
            if 1 <= s <= limit and is_valid(s) and s not in found:
                found.append(s)
        if len(found) >= count:
            break
    return sorted(found[:count])


def check_input_size(model: str, height: int, width: int, is_valid: Callable[[int], bool],
                     rule: str) -> None:
    """Raise ValueError unless ``is_valid`` accepts both sides.

    The message states ``rule`` (why) and the two accepted sides nearest the first refused one.
    """
    bad = [s for s in (height, width) if not is_valid(s)]
    if not bad:
        return
    hints = " or ".join(str(s) for s in nearest_valid_sizes(bad[0], is_valid))
    raise ValueError(f"{model} cannot take {height}x{width} inputs: {rule}; use a side such as "
                     f"{hints}")
