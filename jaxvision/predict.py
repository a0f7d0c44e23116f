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

from absl import flags

from jaxvision import cli

FLAGS = flags.FLAGS
cli.define_run_flags(batch_size=64, batch_size_help="Images per forward pass.",
                     json_help="Print one JSON list on stdout (logs go to stderr).")
flags.DEFINE_integer("top_k", 5, "How many classes to show per image.", lower_bound=1)


def main(argv):
    paths = cli.image_arguments(argv)
    from jaxvision import compilation_cache, evaluation

    compilation_cache.enable()
    with cli.json_stdout(FLAGS.json) as emit:
        run = cli.open_run(FLAGS.workdir, FLAGS.checkpoint)
        try:
            results = evaluation.predict_files(run, paths, top_k=FLAGS.top_k,
                                               batch_size=FLAGS.batch_size)
        except ValueError as e:  # the run's preprocessing cannot be resolved (DataError)
            cli.fail(str(e))
        cli.report_unreadable(results)
        if FLAGS.json:
            emit(results)
    if not FLAGS.json:
        for r in results:
            if "error" not in r:
                print(evaluation.format_prediction(r))
    cli.require_one_read(results, "top_k")
    return 0


if __name__ == "__main__":
    cli.run(main, tensorflow=False)  # files are decoded by Pillow; no dataset is opened
