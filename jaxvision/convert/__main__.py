r"""Convert pretrained weights into a run directory (evaluate, predict, explain, init_from).

    python -m jaxvision.convert --source keras|torch|npz [--model NAME] --input FILE \
        --output DIR [--class_names FILE] [--image_size N] [--json]

Writes DIR/checkpoints/0, DIR/config.json (the model and its preprocessing) and DIR/finetune.py
(a recipe fine-tuning it on an image folder), then prints how to use it (``--json``: one JSON
object with the same facts). Logic: ``jaxvision.convert.run_directory``.
"""

from __future__ import annotations

import os

from absl import flags

from jaxvision import cli

FLAGS = flags.FLAGS
flags.DEFINE_enum("source", None, ["keras", "torch", "npz"], "Where the weights come from: a "
                  "Keras application (.keras/.h5), a torchvision/timm state dict "
                  "(.safetensors/.pt/.pth) or a ViT-paper .npz.")
flags.DEFINE_string("model", None, "jaxvision model name, e.g. resnet50 (needed for torch and npz;"
                    " Keras files name their architecture).")
flags.DEFINE_string("input", None, "The weights file.")
flags.DEFINE_string("output", None, "New run directory to write (must not hold checkpoints).")
flags.DEFINE_string("class_names", None, "Text file with one class name per line, in the head's "
                    "order (default: the class indices).")
flags.DEFINE_integer("image_size", None, "Input resolution to record for the converted model "
                     "(torch sources; default: the architecture's, e.g. 224). CNNs run at any "
                     "size; ViTs keep the checkpoint's grid.", lower_bound=1)
flags.DEFINE_bool("json", False, "Print one JSON object on stdout (logs go to stderr).")
flags.declare_key_flag("verbosity")


def _class_names(path):
    if path is None:
        return None
    if not os.path.isfile(path):
        raise cli.UsageError(f"--class_names {path!r} is not a file (one class name per line)")
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def main(argv):
    if len(argv) > 1:
        raise cli.UsageError(f"unexpected arguments {argv[1:]}; all inputs are flags (--input)")
    for name in ("source", "input", "output"):
        if FLAGS[name].value is None:
            raise cli.UsageError(f"--{name} is required (see --help)")
    if FLAGS.source != "keras" and FLAGS.model is None:
        raise cli.UsageError(f"--source {FLAGS.source} needs --model (the file does not name its "
                             "architecture), e.g. --model resnet50")
    if FLAGS.image_size and FLAGS.source != "torch":
        raise cli.UsageError("--image_size applies to --source torch (Keras and .npz files "
                             "record their resolution)")
    if not os.path.isfile(FLAGS.input):
        raise cli.UsageError(f"--input {FLAGS.input!r} is not a file")
    names = _class_names(FLAGS.class_names)
    from jaxvision import convert

    with cli.json_stdout(FLAGS.json) as emit:
        try:
            options = {"image_size": FLAGS.image_size} if FLAGS.image_size else {}
            converted = convert.convert(FLAGS.source, FLAGS.input, FLAGS.model, **options)
            out = convert.save_converted(converted, FLAGS.output, class_names=names,
                                         input_file=FLAGS.input)
        except (ValueError, KeyError, FileNotFoundError, FileExistsError, NotImplementedError,
                ImportError) as e:
            cli.fail(str(e))
        if FLAGS.json:
            emit({"workdir": out, "model": converted.model_name,
                  "num_classes": converted.num_classes, "image_shape": list(converted.image_shape),
                  "source": converted.source, "model_overrides": converted.model_overrides,
                  "preprocessing": convert.run_directory.preprocessing(converted),
                  "notes": list(converted.notes),
                  "finetune_recipe": os.path.join(out, convert.run_directory.FINETUNE_RECIPE)})
    if not FLAGS.json:
        print(convert.describe(converted, out))
    return 0


if __name__ == "__main__":
    cli.run(main)
