"""Measure the table behind ``jaxvision.layers.conv_cost``: forward, input-gradient and
weight-gradient time of dense bf16 k x k convolutions, XLA's convolution vs per-tap bf16 matmuls,
then fit the cost model to it.

    python -m benchmarks.conv_cost_table [--batch 16] [--reps 3] [--out repo|user|PATH]

``--out repo`` (default) rewrites the table committed in the package
(``jaxvision/layers/conv_cost_table.json``), ``--out user`` writes the running machine's own
table to ``$XDG_CACHE_HOME/jaxvision/`` (used instead of the committed one from then on). Each
pass is timed alone (process CPU time), best of ``--reps`` after a warm-up, in one process. Prints each row and how
often the fitted model picks the measured winner (and what its mistakes cost).
"""

from __future__ import annotations

import argparse
import json
import os
import time

# (kernel, stride, in, out, input side): ResNet-18/34/50 and VGG-style k x k layers, the 7x7/2
# stem, and a few between them so the fit sees the whole range of channels and map sizes.
SHAPES = [
    (7, 2, 3, 64, 224), (3, 1, 64, 64, 56), (3, 2, 128, 128, 56), (3, 1, 128, 128, 28),
    (3, 2, 256, 256, 28), (3, 1, 256, 256, 14), (3, 2, 512, 512, 14), (3, 1, 512, 512, 7),
    (3, 1, 32, 32, 112), (3, 1, 96, 96, 28), (3, 1, 192, 192, 14), (3, 1, 384, 384, 14),
    (3, 1, 128, 256, 14), (5, 1, 64, 64, 28), (5, 1, 256, 256, 7), (3, 2, 64, 128, 56),
]


def _best_ms(fn, args, reps):
    """Fewest process CPU milliseconds (all threads) of one call, over ``reps`` calls: CPU time,
    not wall time, because the machine this runs on is shared and wall time swings with load."""
    import jax

    # A fresh function object: jit's trace cache would otherwise reuse the program traced under
    # the other lowering (the choice is not part of its key).
    f = jax.jit(lambda *a: fn(*a))
    jax.block_until_ready(f(*args))
    best = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        jax.block_until_ready(f(*args))
        best = min(best, time.process_time() - t0)
    return 1e3 * best


def measure(layer, batch, reps):
    """{"shape": ConvShape fields, "ms": {pass: {lowering: ms}}} of one (k, s, cin, cout, side)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxvision.layers import conv_cost
    from jaxvision.layers.lowering import explicit_padding
    from jaxvision.layers.tap_conv import tap_conv

    k, s, cin, cout, side = layer
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, side, side, cin)), jnp.bfloat16)
    w = jnp.asarray(0.05 * rng.standard_normal((k, k, cin, cout)), jnp.bfloat16)
    pads = explicit_padding("SAME", (side, side), (k, k), (s, s), (1, 1))

    def conv(x, w):
        return tap_conv(x, w, strides=(s, s), padding=pads)

    with conv_cost.forced_choice("xla"):  # the shape only (the table may not exist yet)
        y = jax.eval_shape(conv, x, w)
    dy = jnp.ones(y.shape, jnp.bfloat16)
    passes = {
        "forward": (conv, (x, w)),
        "input_grad": (lambda x, w, dy: jax.vjp(lambda x: conv(x, w), x)[1](dy)[0], (x, w, dy)),
        "weight_grad": (lambda x, w, dy: jax.vjp(lambda w: conv(x, w), w)[1](dy)[0], (x, w, dy)),
    }
    ms = {}
    for name, (f, args) in passes.items():
        ms[name] = {}
        for low in conv_cost.LOWERINGS:
            with conv_cost.forced_choice(low):
                ms[name][low] = round(_best_ms(f, args, reps), 3)
    shape = conv_cost.ConvShape(batch, side, side, cin, cout, k, k, y.shape[1], y.shape[2])
    return {"shape": list(shape), "ms": ms}


def report(rows, coef):
    """Per pass: how often the model picks the measured winner, and the time its picks cost
    over the best choice, over the table."""
    from jaxvision.layers import conv_cost

    lines = []
    for p in conv_cost.PASSES:
        right, extra, best = 0, 0.0, 0.0
        for r in rows:
            f = conv_cost.features(conv_cost.ConvShape(*r["shape"]))
            pred = {low: sum(a * v for a, v in zip(coef[p][low], f, strict=True))
                    for low in conv_cost.LOWERINGS}
            pick = min(pred, key=pred.get)
            win = min(r["ms"][p], key=r["ms"][p].get)
            right += pick == win
            extra += r["ms"][p][pick] - r["ms"][p][win]
            best += r["ms"][p][win]
        lines.append(f"{p}: model picks the faster lowering on {right}/{len(rows)} shapes; "
                     f"its picks cost {extra:.1f} ms over the best {best:.1f} ms")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--out", default="repo", help="repo | user | a file path")
    args = p.parse_args(argv)

    from benchmarks.throughput import cpu_model
    from jaxvision.layers import conv_cost

    rows = []
    for layer in SHAPES:
        rows.append(measure(layer, args.batch, args.reps))
        print(json.dumps(rows[-1]), flush=True)
    coef = conv_cost.fit(rows)
    table = {
        "machine": cpu_model(), "batch": args.batch, "dtype": "bfloat16",
        "load_average": round(os.getloadavg()[0], 2),
        "made_by": "python -m benchmarks.conv_cost_table", "coef": coef, "rows": rows,
    }
    out = {"repo": os.path.join(os.path.dirname(conv_cost.__file__), conv_cost.TABLE_NAME),
           "user": conv_cost.user_table_path()}.get(args.out, args.out)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(table, f, indent=1)
    print("\n".join(report(rows, coef)))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
