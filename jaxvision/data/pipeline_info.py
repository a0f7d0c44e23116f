"""What a built input pipeline tells the rest of the library about its split (no TensorFlow)."""

import dataclasses

__all__ = ["PipelineInfo"]


@dataclasses.dataclass(frozen=True)
class PipelineInfo:
    """What the rest of the library needs to know about a split."""

    num_classes: int
    class_names: list = dataclasses.field(repr=False)
    num_examples: int  # examples of the split, all processes
    image_shape: tuple  # (H, W, C) as fed to the model
    split: str  # the resolved split string
    local_batch_size: int
    num_local_examples: int  # this process's shard
    num_skipped: int = 0  # corrupt files skipped in an image folder
    skipped: tuple = dataclasses.field(default=(), repr=False)  # their (path, reason) pairs
    mean: tuple = ()
    std: tuple = ()
