"""Per-device memory of the train state and of the compiled train step under DP, FSDP, FSDP+model.

    python -m benchmarks.sharding [--models vit_b16,vit_l16] [--devices 8] [--batch 8] [--res 224]
        [--dtype float32] [--layouts "dp:data=8;fsdp:fsdp=8;fsdp+model:fsdp=4,model=2"]
        [--no-compile] [--json] [--out FILE]

Nothing big is allocated: the model's variables and the train state are abstract
(``jax.eval_shape``), and the train step is lowered and compiled on ShapeDtypeStructs that carry
the layout's shardings (``jit(...).lower(abstract).compile()``), so ViT-L/16 is measured on a
machine that could not hold eight copies of it. Columns:

* ``state_bytes``: bytes one device holds of parameters + optimizer state (AdamW: two float32
  moments per parameter), laid out by jaxvision.training.sharding's rules for the mesh.
* ``peak_bytes``: ``compiled.memory_analysis()`` of the library's train step on that mesh, per
  device: arguments + outputs - donated aliases + temporaries (benchmarks.throughput's measure),
  so it includes the batch's activations and the gathered parameters FSDP needs inside the step.
* ``compile_s``: lowering + compilation time (this machine, under its load).

The train step is the one ``jaxvision.train`` runs (jaxvision.training.steps.make_train_step on a
TrainState, compiled by DataParallel with donated state), with ``optax.adamw(1e-3,
weight_decay=0.05)`` (DeiT's optimizer). On 8 simulated CPU devices; on GPU/TPU the same command
measures the real backend.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

DEFAULT_LAYOUTS = "dp:data=8;fsdp:fsdp=8;fsdp+model:fsdp=4,model=2"


def parse_mesh(text: str) -> dict[str, int]:
    """'data=2,fsdp=4' -> {'data': 2, 'fsdp': 4}; ValueError with the expected form."""
    sizes = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not value.strip().lstrip("-").isdigit():
            raise ValueError(f"--mesh {text!r}: give axis=size pairs, e.g. data=2,fsdp=4")
        sizes[key.strip()] = int(value)
    return sizes


def parse_layouts(text: str) -> list[tuple[str, dict[str, int]]]:
    """'dp:data=8;fsdp:fsdp=8' -> [('dp', {'data': 8}), ('fsdp', {'fsdp': 8})]."""
    out = []
    for item in filter(None, (t.strip() for t in text.split(";"))):
        name, sep, mesh = item.partition(":")
        if not sep:
            raise ValueError(f"--layouts {item!r}: give name:axis=size,..., e.g. fsdp:fsdp=8")
        out.append((name.strip(), parse_mesh(mesh)))
    return out


def abstract_train_state(model_name: str, res: int, dtype: str):
    """(model, abstract TrainState) of ``model_name`` with AdamW, nothing allocated."""
    import jax
    import jax.numpy as jnp
    import optax

    from jaxvision import models
    from jaxvision.training.state import TrainState

    model = models.create(model_name, dtype=jnp.dtype(dtype))
    variables = models.abstract_variables(model, models.input_shape(model_name, res))
    tx = optax.adamw(1e-3, weight_decay=0.05)
    state = jax.eval_shape(lambda v: TrainState.create(
        params=v["params"], batch_stats=v.get("batch_stats", {}), tx=tx,
        rng=jax.random.PRNGKey(0)), dict(variables))
    return model, state.replace(tx=tx)


def measure(model_name: str, layout: dict[str, int], *, batch: int, res: int, dtype: str,
            compile_step: bool = True) -> dict:
    """One row: the layout's state bytes per device and (optionally) the compiled step's peak."""
    import jax

    from benchmarks.throughput import _memory_breakdown, _peak_bytes
    from jaxvision import models
    from jaxvision.training import sharding, steps
    from jaxvision.training.parallel import DataParallel

    dp = DataParallel("jit", mesh_sizes=layout)
    model, state = abstract_train_state(model_name, res, dtype)
    shardings = dp.state_shardings(state)
    weights = (state.params, state.opt_state)
    row = {"model": model_name, "mesh": dp.sizes, "batch": batch, "res": res, "dtype": dtype,
           "params": models.count_params(state.params),
           "state_bytes": sharding.bytes_per_device(
               weights, (shardings.params, shardings.opt_state)),
           "state_bytes_unsharded": sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(weights))}
    if not compile_step:
        return row
    num_classes = models.get_spec(model_name).num_classes
    step = dp.compile_train_step(steps.make_train_step(model, num_classes=num_classes), state)
    abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                            state, shardings)
    shape = models.input_shape(model_name, res, batch)
    batch_spec = {"image": jax.ShapeDtypeStruct(shape, jax.numpy.float32,
                                                sharding=dp.data_sharding),
                  "label": jax.ShapeDtypeStruct((batch,), jax.numpy.int32,
                                                sharding=dp.data_sharding)}
    t0 = time.perf_counter()
    compiled = step.lower(abstract, batch_spec).compile()
    row["compile_s"] = time.perf_counter() - t0
    row["peak_bytes"] = _peak_bytes(compiled)
    row.update(_memory_breakdown(compiled))
    return row


def _gib(n) -> str:
    return f"{n / 2**30:.2f} GiB" if n is not None and n >= 0 else "n/a"


def format_table(rows: list[dict]) -> str:
    """Markdown table of ``rows`` (as benchmarks/README.md shows it)."""
    lines = ["| model | params | mesh (data x fsdp x model) | params + AdamW state / device | "
             "vs DP | compiled step peak / device | compile s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["mesh"]
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.1f}M | {m['data']} x {m['fsdp']} x "
            f"{m['model']} | {_gib(r['state_bytes'])} | "
            f"{r['state_bytes'] / r['state_bytes_unsharded']:.3f} | "
            f"{_gib(r.get('peak_bytes'))} | {r.get('compile_s', float('nan')):.1f} |")
    return "\n".join(lines)


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="vit_b16,vit_l16")
    p.add_argument("--layouts", default=DEFAULT_LAYOUTS,
                   help="name:axis=size,... separated by ';' (mesh axes data, fsdp, model)")
    p.add_argument("--devices", type=int, default=8, help="simulated CPU devices (CPU only)")
    p.add_argument("--batch", type=int, default=8, help="global batch of the compiled step")
    p.add_argument("--res", type=int, default=224)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--no-compile", action="store_true", help="state bytes only (no compile)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON on stdout")
    p.add_argument("--out", default=None, help="also write the rows as JSON to this file")
    return p.parse_args(argv)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    try:
        layouts = parse_layouts(args.layouts)
    except ValueError as e:
        _fail(str(e))
    from benchmarks.throughput import configure_xla, machine_info

    configure_xla(args.devices)
    rows = []
    for name in filter(None, args.models.split(",")):
        for label, layout in layouts:
            try:
                row = measure(name, layout, batch=args.batch, res=args.res, dtype=args.dtype,
                              compile_step=not args.no_compile)
            except ValueError as e:  # a mesh or batch that does not fit: one line
                _fail(f"{label}: {str(e).splitlines()[0]}")
            row["layout"] = label
            rows.append(row)
            print(format_table([row]).splitlines()[-1], file=sys.stderr, flush=True)
    doc = {"machine": machine_info(), "rows": rows}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=2)
    print(json.dumps(doc, indent=2) if args.json else format_table(rows))
    return rows


if __name__ == "__main__":
    main()
