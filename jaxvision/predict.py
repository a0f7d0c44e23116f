r"""Top-k predictions for image files with a trained run.

    python -m jaxvision.predict --workdir runs/lenet5 [--top_k 5] [--json] \
        [--checkpoint latest|best|STEP] IMAGE_OR_FOLDER...

Prints ``file: 7 0.97, 1 0.02, ...`` per image, or with ``--json`` a list of
``{"file": ..., "top_k": [{"class": NAME, "prob": P}, ...]}``. An unreadable file is reported by
name (stderr; ``{"file": ..., "error": ...}`` in JSON) and the others are still predicted; the
exit code is nonzero only if no file could be read. Logic: ``jaxvision.evaluation.predict_files``.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory written by jaxvision.train.", required=True)
flags.DEFINE_string("checkpoint", "latest", "'latest', 'best' or a step number.")
flags.DEFINE_integer("top_k", 5, "How many classes to show per image.")
flags.DEFINE_bool("json", False, "Print a JSON list instead of text lines.")
flags.DEFINE_integer("batch_size", 64, "Images per forward pass.")


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv):
    paths = argv[1:]
    if not paths:
        _fail("give at least one image file or folder after the flags, e.g. "
              "python -m jaxvision.predict --workdir RUN my_digit.png")
    for name in ("top_k", "batch_size"):
        if FLAGS[name].value < 1:
            _fail(f"--{name} must be >= 1, got {FLAGS[name].value}")
    from jaxvision import cli, evaluation
    from jaxvision.evaluation.predictor import IMAGE_EXTENSIONS, expand_paths

    cli.quiet_logging()
    empty = [p for p in paths if os.path.isdir(p) and not expand_paths([p])]
    if empty:
        _fail(f"no image files in folder {empty[0]} (searched recursively for "
              f"{', '.join(IMAGE_EXTENSIONS)})")
    run = cli.open_run(FLAGS.workdir, FLAGS.checkpoint)
    results = evaluation.predict_files(run, paths, top_k=FLAGS.top_k,
                                       batch_size=FLAGS.batch_size)
    for r in results:
        if "error" in r:
            print(f"cannot read {r['file']}: {r['error']}", file=sys.stderr)
    if FLAGS.json:
        print(json.dumps(results))
    else:
        for r in results:
            if "error" not in r:
                print(evaluation.format_prediction(r))
    if not any("top_k" in r for r in results):
        print("error: none of the given files could be read as an image", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    app.run(main)
