"""Export a loaded run in one format: the library side of ``python -m jaxvision.export``.

    run = jaxvision.training.checkpoints.load_run(workdir, "best")
    summary = export_run(run, "tflite_int8", "lenet_int8.tflite")

What each format writes (class names always travel with the model):

=============  =========================================  =====================================
format         output                                     input
=============  =========================================  =====================================
saved_model    directory (``assets/labels.txt``)          uint8 (N, H, W, 3), any N, H, W
tflite         file + ``<stem>.labels.txt``               uint8 (N, H, W, 3), fixed H, W; any N
                                                          where TFLite can express it, else 1
tflite_int8    file + ``<stem>.labels.txt``               uint8 (1, H, W, 3); uint8 probabilities
stablehlo      file + ``<stem>.labels.txt``               uint8 (N, H, W, 3), fixed H, W; any N
=============  =========================================  =====================================
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from typing import Any

from jaxvision.export import calibration, saved_model, stablehlo, tflite
from jaxvision.export.serving import FORMATS, Servable, labels_path, write_labels

CALIBRATION_IMAGES = 300  # "a few hundred" (TFLite post-training quantization guide: 100-500)


def export_run(run, fmt: str, output: str, *, input_hw: Sequence[int] | None = None,
               calibration_images: int = CALIBRATION_IMAGES, eval_split: str = "test",
               eval_images: int | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Writes ``run``'s classifier to ``output`` in format ``fmt`` and returns a summary dict
    (format, paths, bytes, input shape, class count; for tflite_int8 the accuracy of the float
    and the int8 model on ``eval_split``, see ``calibration.int8_accuracy``).

    Raises ValueError for a bad format / size / existing output, ExportError when the format
    cannot express the model.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    _check_output(output, overwrite, fmt)
    servable = Servable.from_run(run)
    hw = _input_hw(servable, input_hw)
    summary: dict[str, Any] = {"format": fmt, "output": output, "model": servable.model_name,
                               "step": servable.step, "num_classes": servable.num_classes}
    if fmt == "saved_model":
        tmp = output.rstrip("/") + ".tmp-export"
        if os.path.lexists(tmp):
            shutil.rmtree(tmp) if os.path.isdir(tmp) else os.remove(tmp)
        saved_model.export_saved_model(servable, tmp)
        _replace_with(tmp, output)
        summary["input"] = "uint8 (N, H, W, 3), any N, H, W"
    else:
        summary.update(_export_fixed_size(run, servable, fmt, output, hw, calibration_images,
                                          eval_split, eval_images))
    summary["bytes"] = _size(output)
    return summary


def _export_fixed_size(run, servable, fmt, output, hw, calibration_images, eval_split,
                       eval_images) -> dict[str, Any]:
    out: dict[str, Any] = {"input": f"uint8 (N, {hw[0]}, {hw[1]}, 3), any N",
                           "labels": labels_path(output)}
    if fmt == "stablehlo":
        blob = stablehlo.export_stablehlo(servable, hw)
    elif fmt == "tflite":
        blob = tflite.export_tflite(servable, hw)
    else:
        images, _ = calibration.split_pixels(run.config.data, "train", hw,
                                             limit=calibration_images, shuffle_seed=0)
        blob = tflite.export_tflite(servable, hw, calibration=images)
        out["calibration_images"] = int(len(images))
    _write_bytes(output, blob)
    write_labels(out["labels"], servable.class_names)
    if fmt != "stablehlo" and tflite.TFLiteRunner(output).fixed_batch:
        out["input"] = f"uint8 (1, {hw[0]}, {hw[1]}, 3)"
    if fmt == "tflite_int8":
        images, labels = calibration.split_pixels(run.config.data, eval_split, hw,
                                                  limit=eval_images)
        accuracy = calibration.int8_accuracy(run, tflite.TFLiteRunner(output), images, labels)
        out["accuracy"] = {"split": eval_split, **accuracy}
    return out


def _input_hw(servable: Servable, input_hw) -> tuple[int, int]:
    if input_hw is None:
        return servable.default_input_hw()
    hw = tuple(int(v) for v in input_hw)
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"input size must be two positive integers (H, W), got {input_hw}")
    return hw


def _check_output(output: str, overwrite: bool, fmt: str) -> None:
    """Refuses an existing ``output`` unless ``overwrite`` and it is a previous export of this
    kind (a SavedModel folder, or a file); nothing is deleted here: the new export replaces the
    old one only once it is complete, so a failed export loses nothing."""
    if not output:
        raise ValueError("give the output path (--output=PATH)")
    if os.path.lexists(output):
        if not overwrite:
            raise ValueError(f"{output} already exists; choose another path or pass --overwrite")
        is_dir = os.path.isdir(output) and not os.path.islink(output)
        if fmt == "saved_model" and is_dir and not os.path.isfile(
                os.path.join(output, "saved_model.pb")):
            raise ValueError(f"{output} is a folder but not a SavedModel; --overwrite replaces only "
                             "a previous export: choose another --output")
        if fmt != "saved_model" and is_dir:
            raise ValueError(f"{output} is a folder; --format {fmt} writes one file: choose a "
                             "file path for --output")
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise ValueError(f"the folder of --output ({parent}) does not exist; create it first")


def _replace_with(tmp: str, output: str) -> None:
    """Moves the complete export ``tmp`` to ``output``, replacing a previous export there."""
    if os.path.isdir(output) and not os.path.islink(output):
        shutil.rmtree(output)
    elif os.path.lexists(output):
        os.remove(output)
    os.replace(tmp, output)


def _write_bytes(path: str, blob: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(blob)
    os.replace(tmp, path)  # no half-written model under the final name


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, f))
               for root, _, files in os.walk(path) for f in files)


def parse_input_size(text: str) -> tuple[int, int]:
    """'28' -> (28, 28); '240x320' -> (240, 320) (height x width)."""
    parts = str(text).lower().replace(",", "x").split("x")
    try:
        hw = tuple(int(p) for p in parts)
    except ValueError:
        hw = ()
    if len(hw) == 1:
        hw = hw * 2
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"input size {text!r} must be S or HxW with positive integers, e.g. 224 "
                         "or 240x320")
    return hw


def load_exported(fmt: str, path: str):
    """The runtime of each format on ``path``: ``f(uint8 (N, H, W, 3)) -> float32 (N, K)``."""
    if fmt == "saved_model":
        return saved_model.load_saved_model(path)
    if fmt in ("tflite", "tflite_int8"):
        return tflite.TFLiteRunner(path)
    if fmt == "stablehlo":
        return stablehlo.load_stablehlo(path)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def format_summary(summary: dict[str, Any]) -> str:
    """Text lines for the command line."""
    lines = [f"exported {summary['model']} (step {summary['step']}, {summary['num_classes']} "
             f"classes) as {summary['format']}: {summary['output']} ({summary['bytes']:,} bytes)",
             f"input: {summary['input']}; output: probabilities (N, {summary['num_classes']})"]
    if "labels" in summary:
        lines.append(f"class names: {summary['labels']}")
    acc = summary.get("accuracy")
    if acc:
        lines.append(
            f"accuracy on {acc['split']} ({acc['num_images']} images): float "
            f"{100 * acc['float_top1']:.2f}%, int8 {100 * acc['int8_top1']:.2f}%, drop "
            f"{100 * acc['top1_drop']:.2f} points, top-1 agreement "
            f"{100 * acc['top1_agreement']:.2f}% (calibrated on {summary['calibration_images']} "
            "training images)")
    return "\n".join(lines)
