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
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory written by jaxvision.train.", required=True)
flags.DEFINE_string("checkpoint", "latest", "'latest', 'best' or a step number.")
flags.DEFINE_integer("top_k", 5, "How many classes to show per image.")
flags.DEFINE_bool("json", False, "Print a JSON list instead of text lines.")
flags.DEFINE_integer("batch_size", 64, "Images per forward pass.")


def main(argv):
    paths = argv[1:]
    if not paths:
        raise app.UsageError("give at least one image file or folder after the flags")
    from jaxvision import cli, compilation_cache, evaluation

    cli.quiet_logging()
    compilation_cache.enable()
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
