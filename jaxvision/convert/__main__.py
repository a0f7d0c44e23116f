"""python -m jaxvision.convert --source keras|torch|npz --model NAME --input FILE --output DIR

Conventions a checkpoint cannot state (torch only): ``--padding SAME --bn_epsilon 1e-3`` for
timm's TensorFlow ports (detected from a file name containing ``tf_efficientnet``), ``--mean`` /
``--std`` (comma-separated, for pixels in [0, 1]), ``--override key=value`` for any
``models.create`` option of the checkpoint's architecture (value read as JSON, else a string).
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m jaxvision.convert",
        description="Convert pretrained weights into a jaxvision run directory (usable as init_from).",
    )
    parser.add_argument("--source", required=True, choices=("keras", "torch", "npz"))
    parser.add_argument(
        "--model", default=None, help="jaxvision model name, e.g. resnet50, efficientnet_b0"
    )
    parser.add_argument(
        "--input", required=True, help=".keras/.h5, .safetensors/.pt/.pth, or .npz file"
    )
    parser.add_argument("--output", required=True, help="new run directory to write")
    parser.add_argument(
        "--class-names", default=None, help="text file with one class name per line"
    )
    parser.add_argument("--padding", choices=("SAME", "SYMMETRIC"), default=None,
                        help="torch: 'SAME' for timm tf_* ports (default: detected, else SYMMETRIC)")
    parser.add_argument("--bn_epsilon", type=float, default=None,
                        help="torch: BatchNorm epsilon (1e-3 for timm tf_* ports)")
    parser.add_argument("--mean", default=None, help="input mean per channel, e.g. 0.5,0.5,0.5")
    parser.add_argument("--std", default=None, help="input std per channel, e.g. 0.5,0.5,0.5")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="torch: a models.create option of the checkpoint's architecture")
    args = parser.parse_args(argv)

    from jaxvision.convert import _describe, convert, save_converted

    if args.source != "keras" and args.model is None:
        parser.error(
            f"--source {args.source} needs --model (the file does not name its architecture)"
        )
    names = None
    if args.class_names:
        with open(args.class_names) as f:
            names = [line.strip() for line in f if line.strip()]
    try:
        kwargs = _torch_options(args)
        if kwargs and args.source != "torch":
            raise ValueError("--padding/--bn_epsilon/--mean/--std/--override apply to --source torch")
        converted = convert(args.source, args.input, args.model, **kwargs)
        if names is not None and len(names) != converted.num_classes:
            parser.error(f"{len(names)} class names for a {converted.num_classes}-class head")
        save_converted(converted, args.output, class_names=names)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, NotImplementedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(_describe(converted, args.output))
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


def _torch_options(args) -> dict:
    """The torch converter's keywords from the command line (only those given)."""
    out: dict = {}
    if args.padding is not None:
        out["padding"] = args.padding
    if args.bn_epsilon is not None:
        if args.bn_epsilon <= 0:
            raise ValueError(f"--bn_epsilon must be > 0, got {args.bn_epsilon}")
        out["bn_epsilon"] = args.bn_epsilon
    if args.mean is not None:
        out["mean"] = _channels("--mean", args.mean)
    if args.std is not None:
        out["std"] = _channels("--std", args.std)
    for item in args.override:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--override {item!r}: use KEY=VALUE, e.g. --override width=32")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


if __name__ == "__main__":
    sys.exit(main())
