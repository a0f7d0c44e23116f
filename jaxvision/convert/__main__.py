"""python -m jaxvision.convert --source keras|torch|npz --model NAME --input FILE --output DIR"""

from __future__ import annotations

import argparse
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
        converted = convert(args.source, args.input, args.model)
        if names is not None and len(names) != converted.num_classes:
            parser.error(f"{len(names)} class names for a {converted.num_classes}-class head")
        save_converted(converted, args.output, class_names=names)
    except (ValueError, FileNotFoundError, FileExistsError, NotImplementedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(_describe(converted, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
