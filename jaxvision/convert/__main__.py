r"""Convert pretrained weights into a run directory (evaluate, predict, explain, init_from).

    python -m jaxvision.convert --source keras|torch|npz [--model NAME] --input FILE \
        --output DIR [--class_names FILE] [--image_size N] [--json]

Writes DIR/checkpoints/0, DIR/config.json (the model and its preprocessing) and DIR/finetune.py
(a recipe fine-tuning it on an image folder), then prints how to use it (``--json``: one JSON
object with the same facts). Logic: ``jaxvision.convert.run_directory``.

Conventions a checkpoint cannot state (torch only): ``--padding SAME --bn_epsilon 1e-3`` for
timm's TensorFlow ports (detected from a file name containing ``tf_efficientnet``), ``--mean`` /
``--std`` (comma-separated, for pixels in [0, 1]), ``--override key=value`` for any
``models.create`` option of the checkpoint's architecture (value read as JSON, else a string).
"""

from __future__ import annotations

import json
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
flags.DEFINE_enum("padding", None, ["SAME", "SYMMETRIC"], "torch: 'SAME' for timm tf_* ports "
                  "(default: detected from the file name, else SYMMETRIC).")
flags.DEFINE_float("bn_epsilon", None, "torch: BatchNorm epsilon (1e-3 for timm tf_* ports).")
flags.DEFINE_string("mean", None, "torch: input mean per channel for pixels in [0, 1], e.g. "
                    "0.5,0.5,0.5 (default: the source library's).")
flags.DEFINE_string("std", None, "torch: input std per channel, e.g. 0.5,0.5,0.5.")
flags.DEFINE_multi_string("override", [], "torch: KEY=VALUE, a models.create option of the "
                          "checkpoint's architecture (VALUE read as JSON, else a string).")
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
            options = _torch_options()
            if options and FLAGS.source != "torch":
                raise ValueError("--padding/--bn_epsilon/--mean/--std/--override apply to "
                                 "--source torch")
            if FLAGS.image_size:
                options["image_size"] = FLAGS.image_size
            converted = convert.convert(FLAGS.source, FLAGS.input, FLAGS.model, **options)
            out = convert.save_converted(converted, FLAGS.output, class_names=names,
                                         input_file=FLAGS.input)
        except (ValueError, TypeError, KeyError, FileNotFoundError, FileExistsError, NotImplementedError,
                ImportError) as e:
            cli.fail(e.args[0] if isinstance(e, KeyError) and e.args else str(e))
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


def _channels(flag: str, text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or (flag == "--std" and min(values) <= 0):
        raise ValueError(f"{flag} {text!r}: give 3 comma-separated numbers (pixels in [0, 1]), "
                         "e.g. 0.5,0.5,0.5" + (", all > 0" if flag == "--std" else ""))
    return values


def _torch_options() -> dict:
    """The torch converter's keywords from the command line (only those given)."""
    out: dict = {}
    if FLAGS.padding is not None:
        out["padding"] = FLAGS.padding
    if FLAGS.bn_epsilon is not None:
        if FLAGS.bn_epsilon <= 0:
            raise ValueError(f"--bn_epsilon must be > 0, got {FLAGS.bn_epsilon}")
        out["bn_epsilon"] = FLAGS.bn_epsilon
    if FLAGS.mean is not None:
        out["mean"] = _channels("--mean", FLAGS.mean)
    if FLAGS.std is not None:
        out["std"] = _channels("--std", FLAGS.std)
    for item in FLAGS.override:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--override {item!r}: use KEY=VALUE, e.g. --override width=32")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


if __name__ == "__main__":
    cli.run(main)
