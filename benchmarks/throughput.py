"""Training and inference throughput of one registered model, with compile time, FLOPs, MFU, memory.

    python -m benchmarks.throughput --model resnet50 --batch 16 --res 224 [--dtype bfloat16]
        [--parallel jit|pmap] [--devices N] [--mesh data=2,fsdp=4] [--steps S] [--warmup W] [--xla-flags "..."]
        [--matmul-precision P] [--bf16-dots xla|amx] [--conv-impl auto|xla|cpu] [--json] [--out FILE]

What is measured (all in this one process, so the numbers share the machine's state):

* ``compile_s``: lowering + XLA compilation of the train step (``jit(...).lower(...).compile()``).
* ``train_step_s``: median wall time of one train step after ``--warmup`` steps, each step ended by
  ``jax.block_until_ready`` on the new state. The step donates its state (as users run it), so the
  parameters are updated in place and no host sync happens inside the step.
* ``infer_step_s``: the same for ``model.apply(..., train=False)``.
* ``flops_per_img``: XLA's cost analysis of the lowered train step (per device program, before
  XLA's optimizations, traced with XLA's convolutions, so the model's arithmetic counts the same
  whichever convolution lowering runs it) divided by the per-device batch; ``infer_flops_per_img`` likewise for inference.
* ``peak_flops_f32`` / ``peak_flops_bf16``: the best of a few square matmuls run in this process
  (the "matmul probe"); ``mfu`` = achieved train FLOP/s / (devices * the probe's peak for the
  compute dtype). On a CPU with simulated devices all devices share the same cores, so MFU is
  computed against one probe (``--devices`` does not multiply the peak there).
* ``peak_bytes``: ``compiled.memory_analysis()`` of the train step, per device: arguments +
  outputs - donated aliases + temporaries (``mem_*_bytes`` give the parts).

The train step is the library's own (``jaxvision.training.steps.make_train_step`` on a
``TrainState``, compiled by ``jaxvision.training.parallel.DataParallel``: donated state, no host
sync inside the step) with ``optax.sgd(0.1, momentum=0.9)``. It runs unchanged on GPU/TPU:
nothing here is CPU specific except the simulated devices.

Switches for studies (experiments/xla_cpu_conv/README.md): ``--conv-impl xla`` measures the
library with XLA's own convolutions instead of its CPU lowerings (``jaxvision.layers.lowering``;
the default 'auto' uses them on the CPU backend only), ``--bf16-dots amx`` extends the float32
accumulating bf16 dot to every flax Dense layer, ``--xla-flags`` appends XLA flags.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import statistics
import sys
import time
from typing import Any

# ---------------------------------------------------------------------------------------------
# Environment (must happen before jax is imported by the caller's process).


def configure_xla(devices: int | None = None, extra_flags: str | None = None) -> None:
    """Add simulated host devices and extra XLA flags to ``XLA_FLAGS``.

    XLA reads ``XLA_FLAGS`` once, when the first backend starts; call this before any jax
    computation. ``devices`` > 1 asks for that many simulated CPU devices (ignored by GPU/TPU).
    """
    flags = os.environ.get("XLA_FLAGS", "").split()
    if devices and devices > 1:
        flags = [f for f in flags if not f.startswith("--xla_force_host_platform_device_count")]
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    if extra_flags:
        flags.extend(extra_flags.split())
    os.environ["XLA_FLAGS"] = " ".join(flags)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


# ---------------------------------------------------------------------------------------------
# Machine description.


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """Device, host and package versions, recorded with every result."""
    import flax
    import jax
    import jaxlib
    import optax

    dev = jax.devices()[0]
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "device": f"{dev.platform}:{dev.device_kind}",
        "platform": dev.platform,
        "device_count": jax.device_count(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "loadavg": load,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


# ---------------------------------------------------------------------------------------------
# Peak FLOP/s probe.


def matmul_peak(dtype: Any, n: int | None = None, reps: int = 5) -> float:
    """Best FLOP/s of an ``n x n @ n x n`` matmul with ``dtype`` inputs on the default device.

    For 16-bit inputs the best of two forms counts: the product in the input dtype and the
    product accumulated and returned in float32 (``preferred_element_type=float32``). On this
    CPU (XLA 0.10) only the latter reaches the bf16 matrix units (AMX via YNNPACK); a bf16 ->
    bf16 dot is upcast to float32 by the compiler. ``n`` defaults to 2048 on CPU and 8192 on
    accelerators (big enough to reach peak).
    """
    import jax
    import jax.numpy as jnp

    if n is None:
        n = 2048 if jax.default_backend() == "cpu" else 8192
    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.random.normal(ka, (n, n), jnp.float32).astype(dtype)
    b = jax.random.normal(kb, (n, n), jnp.float32).astype(dtype)
    fns = [jax.jit(jnp.matmul).lower(a, b).compile()]
    if jnp.dtype(dtype).itemsize < 4:
        f32_out = functools.partial(jnp.matmul, preferred_element_type=jnp.float32)
        fns.append(jax.jit(f32_out).lower(a, b).compile())
    best = math.inf
    for f in fns:
        f(a, b).block_until_ready()
    for _ in range(reps):
        for f in fns:
            t0 = time.perf_counter()
            f(a, b).block_until_ready()
            best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


# ---------------------------------------------------------------------------------------------
# Experimental: bf16 Dense layers whose forward and backward dots all reach the bf16 matrix units.


def amx_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None):
    """The library's float32-accumulating dot (``jaxvision.layers.dense``): bf16 x bf16 -> f32."""
    from jaxvision.layers.dense import f32_accumulating_dot_general

    return f32_accumulating_dot_general(lhs, rhs, dimension_numbers, precision=precision,
                                        preferred_element_type=preferred_element_type)


_AMX_DOT: list = []


def use_amx_dense() -> None:
    """Make every flax ``nn.Dense`` / ``nn.DenseGeneral`` without its own ``dot_general`` use
    ``amx_dot_general`` (benchmark switch ``--bf16-dots amx``). The library's attention and MLP
    layers already do so by default; this extends it to the remaining Dense layers (heads)."""
    import types

    import flax.linen.linear as linear
    from jax import lax

    if not _AMX_DOT:
        _AMX_DOT.append(True)
    shim = types.SimpleNamespace(**{n: getattr(lax, n) for n in dir(lax) if not n.startswith("__")})
    shim.dot_general = amx_dot_general
    linear.lax = shim


def apply_conv_impl(impl: str) -> None:
    """Make jaxvision trace its convolutions with ``impl`` (see jaxvision.layers.lowering)."""
    from jaxvision.layers import set_conv_impl

    set_conv_impl(None if impl == "auto" else impl)


# ---------------------------------------------------------------------------------------------
# Train step: the library's own, placed and compiled by the library's DataParallel.


def build_train_step(model, variables, num_classes: int, parallel, *, learning_rate=0.1,
                     momentum=0.9, seed: int = 0):
    """(train_step, TrainState) as ``jaxvision.train`` builds them, with plain SGD + momentum.

    ``parallel`` is a ``jaxvision.training.parallel.DataParallel``. The optimizer is
    ``optax.sgd(lr, momentum)`` (what ``build_optimizer`` gives for sgd without clipping or weight
    decay), the same optimizer the Keras comparison uses.
    """
    import jax
    import optax

    from jaxvision.training import steps
    from jaxvision.training.state import TrainState

    tx = optax.sgd(learning_rate, momentum=momentum)
    state = TrainState.create(
        params=variables["params"],
        batch_stats=variables.get("batch_stats", {}),
        tx=tx,
        rng=jax.random.PRNGKey(seed),
    )
    step = steps.make_train_step(model, num_classes=num_classes, axis_name=parallel.axis_name)
    return step, state


# ---------------------------------------------------------------------------------------------
# The benchmark.


def _median_step_time(run_one, warmup: int, steps: int, companion=None, cpu_times=None):
    """Wall times of ``steps`` calls of ``run_one`` after ``warmup`` untimed ones (and, into
    ``cpu_times`` when given, the process CPU seconds of each: all threads, user + system).

    ``companion`` (optional, e.g. one step of a peer framework) runs after each call, timed on
    its own, so both see the same machine load (the returned pair is (times, companion times)).
    """
    for _ in range(warmup):
        run_one()
        if companion is not None:
            companion()
    times, ctimes = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        run_one()
        times.append(time.perf_counter() - t0)
        if cpu_times is not None:
            cpu_times.append(time.process_time() - c0)
        if companion is not None:
            t0 = time.perf_counter()
            companion()
            ctimes.append(time.perf_counter() - t0)
    return (times, ctimes) if companion is not None else times


def _peak_bytes(compiled) -> int:
    """Peak device memory of one call: arguments + outputs - donated aliases + temporaries.

    ``peak_memory_in_bytes`` alone is not used: on XLA:CPU (jaxlib 0.10) it can be smaller than
    the temporaries buffer assignment reserves, so the larger of the two is reported.
    """
    m = compiled.memory_analysis()
    if m is None:
        return -1
    total = int(
        m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
        + m.temp_size_in_bytes
    )
    return max(total, int(getattr(m, "peak_memory_in_bytes", 0) or 0))


def _memory_breakdown(compiled) -> dict[str, int]:
    m = compiled.memory_analysis()
    if m is None:
        return {}
    return {f"mem_{k}_bytes": int(getattr(m, f"{k}_size_in_bytes", 0) or 0)
            for k in ("argument", "output", "alias", "temp", "generated_code")}


def _model_flops(make_fn, *args) -> float:
    """``_flops`` of ``make_fn()`` lowered on ``args``, with the convolutions traced as XLA's
    (a fresh function, so nothing traced before is reused): XLA's cost analysis counts custom
    calls, such as the oneDNN convolutions (``jaxvision.layers.onednn_conv``), as 0 FLOPs."""
    from jaxvision.layers import using_conv_impl

    with using_conv_impl("xla"):
        return _flops(make_fn().lower(*args))


def _flops(lowered) -> float:
    """FLOPs of a step from XLA's cost analysis of the *lowered* (not yet optimized) module: the
    model's own arithmetic, the same whatever lowering runs it. (The compiled module's count
    includes XLA's rewrites: its depthwise weight gradient computes a dense C x C kernel, which
    makes EfficientNet-B0's training step count 26.7 instead of 2.5 GFLOP/img.)"""
    cost = lowered.cost_analysis()
    if isinstance(cost, list | tuple):  # older jax returned one dict per program
        cost = cost[0]
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


def benchmark(
    model_name: str,
    batch: int,
    res: int | None = None,
    *,
    dtype: str = "float32",
    parallel: str = "jit",
    devices: int = 1,
    steps: int = 5,
    warmup: int = 2,
    infer: bool = True,
    probe: bool = True,
    probe_size: int | None = None,
    model_overrides: dict[str, Any] | None = None,
    mesh: dict[str, int] | None = None,
    return_state: bool = False,
    seed: int = 0,
    companion=None,
) -> dict[str, Any]:
    """Run the benchmark and return its results as a flat dict (see the module docstring).

    ``companion``: a callable (one step of a peer, already compiled) timed in alternation with
    the train steps; its times are returned as 'companion_step_s_all'.
    ``mesh``: config.mesh axis sizes over the ``devices`` (jaxvision.training.mesh; default all
    on 'data'); with fsdp/model > 1 the state is sharded as ``jaxvision.train`` shards it.
    ``return_state=True`` adds '_state' (the train state after one step from the seeded start,
    gathered to the host) and '_loss' to the dict, for result-equality checks in scaling.py.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxvision import models
    from jaxvision.training.parallel import DataParallel

    if parallel not in ("jit", "pmap"):
        raise ValueError(f"--parallel must be 'jit' or 'pmap', got {parallel!r}")
    if devices < 1 or devices > jax.device_count():
        raise ValueError(
            f"asked for {devices} devices but jax sees {jax.device_count()}; on CPU pass "
            f"--devices {devices} on the command line (it sets "
            f"--xla_force_host_platform_device_count before jax starts)"
        )
    if batch % devices and not mesh:
        raise ValueError(f"--batch {batch} must be divisible by --devices {devices}")
    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    spec = models.get_spec(model_name)
    res = res or spec.default_resolution
    compute_dtype = jnp.dtype(dtype)
    devs = jax.devices()[:devices]

    dp = DataParallel(parallel, devices=devs, mesh_sizes=mesh)
    if batch % dp.batch_shards:
        raise ValueError(f"--batch {batch} must be divisible by mesh data x fsdp = "
                         f"{dp.batch_shards}")
    per_dev = batch // dp.batch_shards  # images each device's program processes
    overrides = dict(model_overrides or {})
    if dp.axis_name is not None:
        overrides.setdefault("bn_axis_name", dp.axis_name)
    model = models.create(model_name, dtype=compute_dtype, **overrides)

    rng = jax.random.key(seed)
    k_init, k_x, k_y = jax.random.split(rng, 3)
    shape = models.input_shape(model_name, res, batch)
    num_classes = max(spec.num_classes, 1)
    images = np.asarray(jax.random.normal(k_x, shape, jnp.float32))
    labels = np.asarray(jax.random.randint(k_y, (batch,), 0, num_classes, jnp.int32))
    init_fn = jax.jit(functools.partial(model.init, train=False))
    variables = init_fn(k_init, images[:1])
    n_params = models.count_params(variables["params"])
    # Inference gets its own copy: the train step donates (deletes) the buffers of its state.
    host_vars = jax.device_get(variables)
    train_step, state = build_train_step(model, variables, num_classes, dp, seed=seed)

    trace_count = {"train": 0}

    def counted_step(state, batch, rng=None):
        trace_count["train"] += 1  # runs once per trace, never at run time
        return train_step(state, batch, rng)

    step_fn = dp.compile_train_step(counted_step, state)
    dev_batch = dp.put_batch({"image": images, "label": labels})
    if parallel == "jit":
        state = dp.put_state(state)
        infer_fn = jax.jit(lambda v, x: model.apply(v, x, train=False))
        infer_vars = jax.device_put(host_vars, dp.replicated)
    else:
        put = jax.pmap(lambda t: t, devices=devs)  # lays stacked host arrays out per device
        state = put(dp.put_state(jax.device_get(state)))
        dev_batch = put(dev_batch)
        infer_fn = jax.pmap(lambda v, x: model.apply(v, x, train=False), devices=devs)
        infer_vars = put(dp.put_state(host_vars))

    t0 = time.perf_counter()
    lowered = step_fn.lower(state, dev_batch)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    flops_step = _model_flops(
        lambda: dp.compile_train_step(lambda s, b, r=None: train_step(s, b, r), state),
        state, dev_batch)
    peak_bytes = _peak_bytes(compiled)

    holder = {"state": state}

    def one_train():
        holder["state"], metrics = compiled(holder["state"], dev_batch)
        jax.block_until_ready(holder["state"])
        holder["metrics"] = metrics

    # The first step from the seeded start gives the result-equality check its values.
    one_train()
    first = {}
    if return_state:
        first["_loss"] = float(np.mean(np.asarray(holder["metrics"]["loss"])))
        st = jax.device_get(holder["state"])
        if parallel == "pmap":
            st = jax.tree.map(lambda x: x[0], st)
        first["_state"] = st
    cpu_times: list[float] = []
    if companion is not None:
        times, ctimes = _median_step_time(one_train, max(warmup - 1, 0), steps, companion)
        first["companion_step_s_all"] = ctimes
    else:
        times = _median_step_time(one_train, max(warmup - 1, 0), steps, cpu_times=cpu_times)
    train_step_s = statistics.median(times)

    result: dict[str, Any] = {
        "model": model_name,
        "batch": batch,
        "res": res,
        "dtype": str(compute_dtype),
        "parallel": parallel,
        "devices": devices,
        "mesh": dp.sizes,
        "steps": steps,
        "warmup": warmup,
        "params": n_params,
        "train_step_impl": "jaxvision.training.steps.make_train_step + optax.sgd(0.1, momentum=0.9)",
        "lower_s": t1 - t0,
        "compile_s": t2 - t0,
        "train_step_s": train_step_s,
        "train_step_s_all": times,
        "train_img_per_s": batch / train_step_s,
        # CPU seconds (all threads) per step: steadier than wall time on a shared machine.
        "train_step_cpu_s": statistics.median(cpu_times) if cpu_times else None,
        "train_img_per_cpu_s": batch / statistics.median(cpu_times) if cpu_times else None,
        "flops_per_img": flops_step / per_dev,
        "train_flops_per_s": flops_step * devices / train_step_s,
        "peak_bytes": peak_bytes,
        **_memory_breakdown(compiled),
        "train_traces": trace_count["train"],
        "final_loss": float(np.mean(np.asarray(holder["metrics"]["loss"]))),
    }

    if infer:
        t0 = time.perf_counter()
        infer_l = infer_fn.lower(infer_vars, dev_batch["image"])
        infer_c = infer_l.compile()
        result["infer_compile_s"] = time.perf_counter() - t0
        infer_apply = lambda v, x: model.apply(v, x, train=False)  # noqa: E731
        result["infer_flops_per_img"] = _model_flops(
            lambda: (jax.jit(infer_apply) if parallel == "jit"
                     else jax.pmap(infer_apply, devices=devs)),
            infer_vars, dev_batch["image"]) / per_dev
        result["infer_peak_bytes"] = _peak_bytes(infer_c)

        def one_infer():
            jax.block_until_ready(infer_c(infer_vars, dev_batch["image"]))

        itimes = _median_step_time(one_infer, warmup, steps)
        result["infer_step_s"] = statistics.median(itimes)
        result["infer_img_per_s"] = batch / result["infer_step_s"]

    if probe:
        result["peak_flops_f32"] = matmul_peak(jnp.float32, probe_size)
        result["peak_flops_bf16"] = matmul_peak(jnp.bfloat16, probe_size)
        peak = result["peak_flops_bf16" if compute_dtype == jnp.bfloat16 else "peak_flops_f32"]
        # Simulated CPU devices share the host's cores: their peak is the host's, not N times it.
        n_peak = devices if jax.default_backend() != "cpu" else 1
        result["mfu"] = result["train_flops_per_s"] / (peak * n_peak)
        if infer:
            result["infer_mfu"] = (
                result["infer_flops_per_img"] * batch / result["infer_step_s"] / (peak * n_peak)
            )
    result.update(machine_info())
    result.update(first)
    return result


# ---------------------------------------------------------------------------------------------
# Command line.


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def format_result(r: dict[str, Any]) -> str:
    lines = [
        f"model {r['model']}  batch {r['batch']}  res {r['res']}  dtype {r['dtype']}  "
        f"parallel {r['parallel']} x{r['devices']}  params {r['params']:,}",
        f"device {r['device']} ({r['cpu']}, {r['cpu_count']} cores, load {r['loadavg']})",
        f"compile        {r['compile_s']:8.2f} s (lowering {r['lower_s']:.2f} s)",
        f"train step     {r['train_step_s'] * 1e3:8.1f} ms  -> {r['train_img_per_s']:9.2f} img/s"
        f"   (median of {r['steps']} after {r['warmup']} warm-up)",
    ]
    if "infer_step_s" in r:
        lines.append(
            f"infer step     {r['infer_step_s'] * 1e3:8.1f} ms  -> {r['infer_img_per_s']:9.2f} img/s"
        )
    lines.append(
        f"FLOPs/img      train {r['flops_per_img'] / 1e9:.3f} GFLOP"
        + (f", infer {r['infer_flops_per_img'] / 1e9:.3f} GFLOP" if "infer_flops_per_img" in r else "")
    )
    lines.append(f"achieved       {r['train_flops_per_s'] / 1e9:.1f} GFLOP/s (train)")
    if "mfu" in r:
        lines.append(
            f"peak (probe)   f32 {r['peak_flops_f32'] / 1e9:.1f} GFLOP/s, "
            f"bf16 {r['peak_flops_bf16'] / 1e9:.1f} GFLOP/s  -> MFU {100 * r['mfu']:.1f}%"
        )
    lines.append(f"peak memory    {_fmt_bytes(r['peak_bytes'])} per device (train step)")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a name from jaxvision.models.list_models()")
    p.add_argument("--batch", type=int, default=16, help="global batch size")
    p.add_argument("--res", type=int, default=None, help="image side (default: the model's)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--parallel", default="jit", choices=["jit", "pmap"])
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--mesh", default="", help="mesh axis sizes over the devices, e.g. "
                   "data=2,fsdp=4 or fsdp=8 (default: all on data); see benchmarks/sharding.py")
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    p.add_argument("--no-infer", action="store_true", help="skip the inference measurement")
    p.add_argument("--no-probe", action="store_true", help="skip the matmul peak probe (no MFU)")
    p.add_argument("--probe-size", type=int, default=None)
    p.add_argument("--xla-flags", default="", help="extra XLA flags, appended to XLA_FLAGS")
    p.add_argument(
        "--matmul-precision",
        default=None,
        choices=["default", "high", "highest", "bfloat16", "tensorfloat32", "float32"],
        help="jax_default_matmul_precision for the whole run",
    )
    p.add_argument(
        "--bf16-dots",
        default="xla",
        choices=["xla", "amx"],
        help="'amx': bf16 Dense layers run every dot as bf16 x bf16 -> f32 (custom VJP), the "
        "form XLA:CPU runs on AMX; 'xla': as the library builds them",
    )
    p.add_argument(
        "--conv-impl",
        default="auto",
        choices=["auto", "xla", "cpu"],
        help="how jaxvision lowers convolutions (jaxvision.layers.lowering): 'xla' = XLA's "
        "convolution everywhere; 'cpu' = 1x1/patchify as matmuls, depthwise as fused shifted "
        "products; 'auto' (default) = 'cpu' on the CPU backend, 'xla' elsewhere",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--out", default=None, help="also write the JSON result to this file")
    return p.parse_args(argv)


def main(argv=None) -> dict[str, Any]:
    args = parse_args(argv)
    configure_xla(args.devices, args.xla_flags)
    import jax

    if args.matmul_precision:
        jax.config.update("jax_default_matmul_precision", args.matmul_precision)
    if args.bf16_dots == "amx":
        use_amx_dense()
    apply_conv_impl(args.conv_impl)
    from benchmarks.sharding import parse_mesh
    from jaxvision.layers import conv_impl
    try:
        result = benchmark(
            args.model,
            args.batch,
            args.res,
            dtype=args.dtype,
            parallel=args.parallel,
            devices=args.devices,
            steps=args.steps,
            warmup=args.warmup,
            infer=not args.no_infer,
            probe=not args.no_probe,
            probe_size=args.probe_size,
            mesh=parse_mesh(args.mesh) or None,
        )
    except (KeyError, ValueError, TypeError) as e:
        if isinstance(e, KeyError | ValueError) or "option" in str(e):
            sys.exit(f"error: {e.args[0] if e.args else e}")
        raise
    result["matmul_precision"] = args.matmul_precision or "default"
    result["bf16_dots"] = args.bf16_dots
    result["conv_impl"] = conv_impl()
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    if args.json:
        print(json.dumps(result))
    else:
        print(format_result(result))
    return result


if __name__ == "__main__":
    main()
