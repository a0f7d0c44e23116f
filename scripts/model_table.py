"""Print a table of every registered model: name, family, default resolution, parameters, GMACs.

    python scripts/model_table.py              # markdown (default), for the README
    python scripts/model_table.py --json       # a JSON list of rows
    python scripts/model_table.py --family resnet --no-macs
    python scripts/model_table.py --update-readme   # rewrite the table in README.md in place

Everything comes from the registry (``jaxvision.models``), so families added later appear
without changes here.

How it is counted (all abstractly: nothing is initialized or compiled, no array is allocated):

* Parameters: scalars in the ``params`` collection at the model's default class count (BatchNorm
  running statistics are not parameters), from ``jax.eval_shape`` of ``model.init``.
* GMACs: XLA's cost analysis of the *lowered* (not compiled) ``jax.jit(model.apply)`` in
  evaluation mode at batch 1 and the default resolution, float32: ``flops / 2 / 1e9``. XLA counts
  2 flops per multiply-add of convolutions and matmuls, over the kernel taps that fall inside the
  (unpadded) input, plus about 1 flop per element of elementwise ops (norms, activations,
  softmax, residual adds). MACs are therefore within a few percent of fvcore / ptflops counts:
  slightly lower for padded convolutions, slightly higher for models with many elementwise ops.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def model_rows(names: list[str], macs: bool = True) -> list[dict]:
    import jax
    import jax.numpy as jnp

    from jaxvision import models

    rows = []
    for name in names:
        info = models.model_info(name)
        row = {
            "name": name,
            "family": info["family"],
            "resolution": info["default_resolution"],
            "in_channels": info["in_channels"],
            "num_classes": info["num_classes"],
            "params": info["params"],
            "gmacs": None,
        }
        if macs:
            model = models.create(name)
            shape = models.input_shape(name, batch=1)
            variables = models.abstract_variables(model, shape)
            x = jax.ShapeDtypeStruct(shape, jnp.float32)
            cost = jax.jit(model.apply).lower(variables, x).cost_analysis()
            if isinstance(cost, list | tuple):  # older jax returned one dict per device
                cost = cost[0]
            flops = (cost or {}).get("flops")
            row["gmacs"] = None if flops is None else flops / 2 / 1e9
        rows.append(row)
    return rows


def _fmt_params(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}K"


def markdown(rows: list[dict]) -> str:
    lines = [
        "| Model | Family | Resolution | Parameters | GMACs |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        res = f"{r['resolution']}x{r['resolution']}x{r['in_channels']}"
        gmacs = "n/a" if r["gmacs"] is None else f"{r['gmacs']:.3g}" if r["gmacs"] < 1 else f"{r['gmacs']:.2f}"
        lines.append(
            f"| `{r['name']}` | {r['family']} | {res} | {r['params']:,} ({_fmt_params(r['params'])}) | {gmacs} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", dest="format", action="store_const", const="markdown",
                     help="markdown table (default)")
    fmt.add_argument("--json", dest="format", action="store_const", const="json",
                     help="JSON list of rows")
    parser.add_argument("--family", action="append", help="only these families (repeatable)")
    parser.add_argument("--no-macs", action="store_true", help="skip the GMACs column (faster)")
    parser.add_argument("--update-readme", action="store_true",
                        help="replace the table between the MODEL_TABLE markers of README.md")
    parser.set_defaults(format="markdown")
    args = parser.parse_args(argv)

    from jaxvision import models

    families = models.list_families()
    if args.family:
        unknown = sorted(set(args.family) - set(families))
        if unknown:
            parser.error(f"unknown family {', '.join(unknown)}; registered: {', '.join(families)}")
        families = [f for f in families if f in args.family]
    # Natural order inside a family: resnet18 before resnet101.
    natural = lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)]  # noqa: E731
    names = [n for f in families for n in sorted(models.list_models(f), key=natural)]
    rows = model_rows(names, macs=not args.no_macs)
    if args.update_readme:
        update_readme(markdown(rows))
    elif args.format == "json":
        print(json.dumps(rows, indent=1))
    else:
        print(markdown(rows))
    return 0


README = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "README.md")
START, END = "<!-- MODEL_TABLE_START -->", "<!-- MODEL_TABLE_END -->"


def update_readme(table: str, path: str = README) -> None:
    """Replace what stands between the START and END markers of the README with ``table``."""
    with open(path) as f:
        text = f.read()
    if START not in text or END not in text:
        raise SystemExit(f"{path} has no {START} ... {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w") as f:
        f.write(f"{head}{START}\n{table}\n{END}{tail}")
    print(f"updated the model table in {os.path.normpath(path)}")


if __name__ == "__main__":
    sys.exit(main())
