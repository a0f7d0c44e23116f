r"""Top-k predictions for image files with any run directory (train, convert, compression).

    python -m jaxvision.predict --workdir RUN [--checkpoint latest|best|STEP] [--top_k 5] \
        [--batch_size 64] [--json] IMAGE_OR_FOLDER...

Prints ``file: 7 0.97, 1 0.02, ...`` per image, or with ``--json`` one JSON list of
``{"file": ..., "top_k": [{"class": NAME, "prob": P}, ...]}``. Folders are searched recursively
for images. An unreadable file is reported by name (stderr; ``{"file": ..., "error": ...}`` in
JSON) and the others are still predicted; the exit status is 2 only if no file could be read.
Works offline: the preprocessing comes from the run directory, no dataset is opened.
Logic: ``jaxvision.evaluation.predict_files``.
"""

from __future__ import annotations

import os
import sys

from absl import flags

from jaxvision import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory (written by jaxvision.train, convert or "
                    "compression).")
flags.DEFINE_string("checkpoint", "latest", "Which checkpoint: 'latest', 'best' or a step number.")
flags.DEFINE_integer("top_k", 5, "How many classes to show per image.", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Images per forward pass.", lower_bound=1)
flags.DEFINE_bool("json", False, "Print one JSON list on stdout (logs go to stderr).")
flags.declare_key_flag("verbosity")


def main(argv):
    paths = argv[1:]
    if FLAGS.workdir is None:
        raise cli.UsageError("--workdir is required (a run directory)")
    if not paths:
        raise cli.UsageError("give at least one image file or folder after the flags")
    from jaxvision import compilation_cache, evaluation
    from jaxvision.evaluation.predictor import IMAGE_EXTENSIONS, expand_paths

    compilation_cache.enable()
    empty = [p for p in paths if os.path.isdir(p) and not expand_paths([p])]
    if empty:
        raise cli.UsageError(f"no image files in folder {empty[0]} (searched recursively for "
                             f"{', '.join(IMAGE_EXTENSIONS)})")

    with cli.json_stdout(FLAGS.json) as emit:
        run = cli.open_run(FLAGS.workdir, FLAGS.checkpoint)
        try:
            results = evaluation.predict_files(run, paths, top_k=FLAGS.top_k,
                                               batch_size=FLAGS.batch_size)
        except ValueError as e:  # the run's preprocessing cannot be resolved (DataError)
            cli.fail(str(e))
        for r in results:
            if "error" in r:
                print(f"cannot read {r['file']}: {r['error']}", file=sys.stderr)
        if FLAGS.json:
            emit(results)
    if not FLAGS.json:
        for r in results:
            if "error" not in r:
                print(evaluation.format_prediction(r))
    if not any("top_k" in r for r in results):
        cli.fail("none of the given files could be read as an image; give image files "
                 f"({', '.join(evaluation.predictor.IMAGE_EXTENSIONS)}) or folders holding them")
    return 0


if __name__ == "__main__":
    cli.run(main, tensorflow=False)  # files are decoded by Pillow; no dataset is opened
