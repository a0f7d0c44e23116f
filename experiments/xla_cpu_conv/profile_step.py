"""Where a train step's time goes on XLA:CPU: per-op thread time from the JAX profiler.

    python experiments/xla_cpu_conv/profile_step.py --model resnet50 [--batch 16] [--res 224]
        [--conv-impl auto|xla|cpu] [--top 25] [--hlo FILE]

Compiles the library's train step (``benchmarks.throughput.build_train_step``), runs it twice,
then traces one step with ``jax.profiler`` (``--xla_cpu_enable_xprof_traceme``) and reads the
XSpace protobuf: thread time per XLA op (the executor runs independent ops on both cores, so the
total exceeds the wall time), grouped by op kind ("ynn_fusion" = a YNNPACK matmul/conv/reduce,
"copy_bitcast_fusion" = a fused layout change, ...), then the top single ops with their output
shape and the HLO op name they come from. ``--hlo`` also writes the optimized HLO text.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def op_times(trace_dir: str) -> collections.Counter:
    """Thread time (ms) per XLA op name in the XSpace written under ``trace_dir``."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2  # ships with tensorflow-cpu

    path = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)[0]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    times: collections.Counter = collections.Counter()
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if "Eigen" not in line.name and "PjRt" not in line.name:
                continue  # XLA's worker threads only
            for ev in line.events:
                name = names.get(ev.metadata_id, "?")
                if "ThunkExecutor" in name or "Await" in name:
                    continue
                times[name] += ev.duration_ps / 1e9
    return times


def describe(hlo: str, name: str) -> str:
    """Output shape and source op of one HLO instruction of the optimized module."""
    m = re.search(r"%" + re.escape(name) + r" = (\S+) .*?(?:op_name=\"([^\"]+)\")?", hlo)
    if not m:
        return ""
    shape = m.group(1)
    line = hlo[m.start():hlo.find("\n", m.start())]
    op = re.search(r'op_name="([^"]+)"', line)
    if op is None:  # fusions carry the metadata on their fused computation
        comp = re.search(r"calls=%([\w.\-]+)", line)
        body = comp and re.search(r"%" + re.escape(comp.group(1)) + r" .*?\n\}", hlo, re.S)
        op = body and re.findall(r'op_name="([^"]+)"', body.group(0))
        op = op[-1] if op else ""
    else:
        op = op.group(1)
    return f"{shape} {op[-70:]}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet50")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--res", type=int, default=224)
    p.add_argument("--conv-impl", default="auto", choices=["auto", "xla", "cpu", "onednn"])
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--hlo", default=None, help="write the optimized HLO text here")
    p.add_argument("--by-scope", action="store_true",
                   help="also total the thread time per model scope (layer indices dropped)")
    args = p.parse_args(argv)
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_cpu_enable_xprof_traceme=true")
    sys.path.insert(0, ROOT)
    import jax
    import numpy as np

    from benchmarks.throughput import apply_conv_impl, build_train_step
    from jaxvision import models
    from jaxvision.training.parallel import DataParallel

    apply_conv_impl(args.conv_impl)
    dp = DataParallel("jit", devices=jax.devices()[:1])
    model = models.create(args.model, dtype=args.dtype)
    shape = models.input_shape(args.model, args.res, args.batch)
    rng = np.random.default_rng(0)
    batch = dp.put_batch({"image": rng.standard_normal(shape, dtype=np.float32),
                          "label": rng.integers(0, 1000, args.batch).astype(np.int32)})
    variables = jax.jit(lambda k, x: model.init(k, x, train=False))(
        jax.random.key(0), batch["image"][:1])
    step, state = build_train_step(model, variables, 1000, dp)
    state = dp.put_state(state)
    compiled = dp.compile_train_step(step).lower(state, batch).compile()
    hlo = compiled.as_text()
    if args.hlo:
        with open(args.hlo, "w") as f:
            f.write(hlo)
    for _ in range(2):
        state, _ = compiled(state, batch)
        jax.block_until_ready(state)
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            t0 = time.perf_counter()
            state, _ = compiled(state, batch)
            jax.block_until_ready(state)
            wall = time.perf_counter() - t0
        times = op_times(d)
    kinds: collections.Counter = collections.Counter()
    counts: collections.Counter = collections.Counter()
    for name, ms in times.items():
        kind = re.sub(r"\.\d+$", "", name)
        kinds[kind] += ms
        counts[kind] += 1
    print(f"{args.model} b{args.batch} {args.res}px conv-impl {args.conv_impl}: step {wall:.2f} s "
          f"wall, {sum(times.values()) / 1e3:.2f} s thread time in XLA ops")
    print("\nby kind (ms, count):")
    for kind, ms in kinds.most_common(12):
        print(f"  {ms:8.1f}  x{counts[kind]:<4d} {kind}")
    if args.by_scope:
        scopes: collections.Counter = collections.Counter()
        for name, ms in times.items():
            op = describe(hlo, name).split(" ", 1)[-1]
            scopes[re.sub(r"(block|stage|layer)_\d+", "#", op)[-60:]] += ms
        print("\nby scope (ms):")
        for scope, ms in scopes.most_common(args.top):
            print(f"  {ms:8.1f}  {scope}")
    print(f"\ntop {args.top} ops (ms):")
    for name, ms in times.most_common(args.top):
        print(f"  {ms:8.1f}  {name:28s} {describe(hlo, name)}")


if __name__ == "__main__":
    main()
