r"""Heat-map overlays for image files with any run directory.

    python -m jaxvision.explain --workdir RUN [--method gradcam|saliency|integrated_gradients|
        rollout|token_gradcam] [--layer PATH] [--target CLASS] [--checkpoint latest|best|STEP] \
        [--output OUT] [--json] IMAGE_OR_FOLDER...

Inputs are handled as ``predict`` handles them (folders searched recursively; an unreadable file
is reported and the others explained; exit status 2 only if none could be read). Each image is
preprocessed with the run's recorded preprocessing, explained for its predicted class (or
``--target``) and written as ``OUT/<stem>.<method>.<class>.png`` (``OUT`` defaults to
``RUN/explain``; an existing file is never overwritten: ``<stem>-2...`` is used). Prints
``file<TAB>class<TAB>prob<TAB>output`` per image, or with ``--json`` one JSON list.
Logic: ``jaxvision.explain.files.explain_files``.
"""

from __future__ import annotations

import os

from absl import flags

from jaxvision import cli

# = jaxvision.explain.methods.METHODS, spelled out: importing it loads JAX before the flags are
# parsed (a flag error would then wait for JAX and show its banners).
METHODS = ("gradcam", "saliency", "integrated_gradients", "rollout", "token_gradcam")
FLAGS = flags.FLAGS
cli.define_run_flags(batch_size=16, batch_size_help="Images per forward/backward pass.",
                     json_help="Print one JSON list on stdout (logs go to stderr).")
flags.DEFINE_enum("method", "gradcam", METHODS, "gradcam (CNNs, hybrids), rollout and "
                  "token_gradcam (ViTs, hybrids), saliency and integrated_gradients (any model).")
flags.DEFINE_string("layer", None, "Module path Grad-CAM reads, e.g. 'backbone/stage3' (default: "
                    "the last feature map of at least 7x7, see jaxvision.explain.default_layer).")
flags.DEFINE_string("target", None, "Class index or name to explain (default: the predicted "
                    "class of each image).")
flags.DEFINE_integer("ig_steps", 32, "Integrated-gradients steps (Riemann sum).", lower_bound=1)
flags.DEFINE_float("alpha", 0.45, "Heat-map opacity in the overlay, in [0, 1].", lower_bound=0,
                   upper_bound=1)
flags.DEFINE_string("output", None, "Folder for the PNGs (default WORKDIR/explain).")


def main(argv):
    paths = cli.image_arguments(argv)
    from jaxvision import compilation_cache
    from jaxvision.explain.files import explain_files

    compilation_cache.enable()
    with cli.json_stdout(FLAGS.json) as emit:
        run = cli.open_run(FLAGS.workdir, FLAGS.checkpoint)
        output = cli.output_folder(FLAGS.output or os.path.join(FLAGS.workdir, "explain"))
        try:
            results = explain_files(
                run, paths, method=FLAGS.method, layer=FLAGS.layer, target=FLAGS.target,
                steps=FLAGS.ig_steps, alpha=FLAGS.alpha, batch_size=FLAGS.batch_size,
                output=output)
        except ValueError as e:
            cli.fail(str(e))
        cli.report_unreadable(results)
        if FLAGS.json:
            emit(results)
    if not FLAGS.json:
        for r in results:
            if "error" not in r:
                print(f"{r['file']}\t{r['class']}\t{r['prob']:.4f}\t{r['output']}")
    cli.require_one_read(results, "output")
    return 0


if __name__ == "__main__":
    cli.run(main, tensorflow=False)  # files are decoded by Pillow; no dataset is opened
