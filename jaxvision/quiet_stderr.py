"""C/C++ start-up banners kept off stderr (TensorFlow's oneDNN notice, absl's pre-init line).

A low-level module: ``jaxvision.cli`` filters JAX's and TensorFlow's imports through it before a
command starts, and ``jaxvision.data._tf`` filters TensorFlow's import when a command first needs
it mid-run (``evaluate`` on a dataset that needs tf.data), so no command prints them either way.
``--verbosity`` (absl's flag) on the command line brings every banner back.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator, Sequence

__all__ = ["filtered_stderr", "verbosity_requested"]

_VERBOSITY = re.compile(r"^(--verbosity|-v)(=|$)")


def verbosity_requested(argv: Sequence[str]) -> bool:
    return any(_VERBOSITY.match(a) for a in argv)


# C++ INFO lines ("I0000 00:00:... port.cc:153] oneDNN custom operations are on ...") and absl's
# pre-initialisation notice, which TensorFlow 2.2x writes to fd 2 whatever TF_CPP_MIN_LOG_LEVEL says;
# the TFLite converter's notices that it ignores options TF itself sets (W0000 ... Ignored
# output_format. / Ignored drop_control_dependency.), which no user can act on; its quantizer's
# settings dump (fully_quantize: 0, inference_type: 6, ...) and the interpreter's XNNPACK notice.
_BANNER = re.compile(rb"^(I\d{4} .*|WARNING: All log messages before absl::InitializeLog\(\).*"
                     rb"|W\d{4} .*\] Ignored (output_format|drop_control_dependency)\."
                     rb"|fully_quantize: \d+, inference_type: \d+, input_inference_type: \w+, "
                     rb"output_inference_type: \w+"
                     rb"|INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.)$")


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Collect what C/C++ code writes to fd 2 meanwhile and replay it without the INFO banners
    (warnings and errors pass)."""
    import tempfile

    sys.stderr.flush()
    saved_fd = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved_fd, 2)
            os.close(saved_fd)
            tmp.seek(0)
            kept = [line for line in tmp.read().splitlines() if not _BANNER.match(line)]
            if kept:
                sys.stderr.buffer.write(b"\n".join(kept) + b"\n")
                sys.stderr.flush()
