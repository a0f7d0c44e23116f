"""What the command lines (train, evaluate, predict, explain) share: quiet logs and opening a run."""

from __future__ import annotations

import logging
import sys

from absl import logging as absl_logging


def quiet_logging() -> None:
    """TFDS and Orbax log every dataset read and checkpoint save at INFO: show warnings only,
    and jaxvision's own messages."""
    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("jaxvision").setLevel(logging.INFO)


def open_run(workdir: str, checkpoint: str):
    """``load_run(workdir, checkpoint)`` for a command line: a bad ``--checkpoint``, a missing or
    mismatched run is printed as one ``error: ...`` line with exit status 2."""
    from jaxvision import evaluation
    from jaxvision.training import checkpoints

    try:
        return checkpoints.load_run(workdir, evaluation.parse_checkpoint(checkpoint))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
