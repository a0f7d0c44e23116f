"""Whether oneDNN multiplies bf16 operands as bf16 or as float32 copies, chosen once per machine.

**Why a choice.** oneDNN's bf16 kernels are fast only where the CPU multiplies bf16 faster than
float32: Intel's AMX (``brg:avx512_core_amx``) and, less so, AMD Zen 4's AVX512-BF16. On an Intel
Xeon with AVX512-BF16 but no AMX (2 cores, measured 2026-12-02) oneDNN's bf16 matmul ran at half
its float32 rate (3152x1536x384: 78 vs 153 GFLOP/s), and every bf16 training step was slower than
float32. There, computing the products on float32 copies made bf16 training steps (batch 16,
224 px, ``python -m benchmarks.throughput --dtype bfloat16``) faster: ViT-S/16 3.84 -> 4.99 img/s,
ResNet-50 3.87 -> 4.64, EfficientNet-B0 8.24 -> 10.21, MobileNetV2 14.49 -> 16.97.

**Same numbers.** The widening changes no product: a bf16 x bf16 product is exact in float32,
both forms accumulate in float32 and the result is rounded once to bf16, as before. Only the
order of the float32 sums may differ (kernel choice), as between two CPUs. The one exception is
the attention core, whose float32 form skips the bf16 roundings of the probabilities and their
cotangent: its outputs and gradients differ between the forms by a few bf16 ulps (both are within
bf16 precision of float32 attention). Activations and
gradients stay bf16 in memory (saved residuals included); the float32 copies live only for the
duration of one call.

**The choice**: ``JAXVISION_ONEDNN_BF16`` = ``auto`` (default) | ``native`` | ``float32``.
``auto`` times one oneDNN matmul (``PROBE_SHAPE``) in both dtypes, the first time a bf16 oneDNN
product is traced on a machine, and keeps bf16 where it is at least as fast as float32. The
result is stored in ``$XDG_CACHE_HOME/jaxvision/onednn_bf16.json`` under the CPU's model name and
feature flags, so every later process on the machine (a resumed run included) makes the same
choice and pays nothing; delete the file to measure again. It is read when a program is traced
(as ``lowering.conv_impl``). The attention core (``onednn_attention``) follows the same choice;
in float32 form its probabilities stay unrounded and only its output and gradients are rounded to
bf16 (its docstring gives the measurement).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxvision import env_settings, user_cache

__all__ = ["ENV_VAR", "CHOICES", "choice", "compute_dtype", "cpu_key", "measure", "record"]

log = logging.getLogger(__name__)

ENV_VAR = "JAXVISION_ONEDNN_BF16"
CHOICES = env_settings.CHOICES[ENV_VAR][0]
FILE_NAME = "onednn_bf16.json"
# (M, K, N) of the timed product: about a ViT-S/16 MLP product's size per image row block, large
# enough (2.1 GFLOP) that a 2-core machine takes ~10 ms and timer noise is small.
PROBE_SHAPE = (1024, 1024, 1024)
PROBE_REPEATS = 5
_made: list[str] = []  # the measured choice, once this process has made it


def compute_dtype(dtype) -> jnp.dtype:
    """The dtype oneDNN computes a product of ``dtype`` operands in: float32 for bfloat16 where
    this machine's choice is 'float32' (see the module docstring), else ``dtype`` itself."""
    if jnp.dtype(dtype) == jnp.bfloat16 and choice() == "float32":
        return jnp.dtype(jnp.float32)
    return jnp.dtype(dtype)


def choice() -> str:
    """'native' or 'float32': ``$JAXVISION_ONEDNN_BF16`` when it names one, else this machine's
    measured choice (``_measured_choice``). Raises ValueError for any other setting."""
    setting = env_settings.choice(ENV_VAR)
    return _measured_choice() if setting == "auto" else setting


def record() -> dict:
    """What a run record (``env.json``) keeps of this choice, without measuring: ``setting``
    (``$JAXVISION_ONEDNN_BF16`` normalized, 'auto' when unset), ``stored`` (this CPU's stored
    entry or None) and ``effective``: 'native' or 'float32' where that is known now (a forced
    setting, a choice made in this process, a stored entry), else None (measured at the first
    bf16 oneDNN product; the log says). Raises ValueError for a bad setting."""
    setting = env_settings.choice(ENV_VAR)
    entry = _read(user_cache.directory(FILE_NAME)).get(cpu_key())
    stored = entry if _valid(entry) else None
    effective = (setting if setting != "auto"
                 else _made[-1] if _made else stored["choice"] if stored else None)
    return {"setting": setting, "stored": stored, "effective": effective}


def cpu_key() -> str:
    """A short hash of the CPU's model name and feature flags (``/proc/cpuinfo``; the platform's
    processor string elsewhere): the key a measured choice is stored under."""
    text = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f if ln.startswith(("model name", "flags"))]
        text = "".join(sorted(set(lines))) or text
    except OSError:
        pass
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.cache
def _measured_choice() -> str:
    """This machine's stored choice, measured (``measure``) and stored when there is none. A
    damaged or unreadable file counts as none; an unwritable one keeps the choice in process.
    Never raises: where the probe cannot run (oneDNN's matmul unavailable while its convolution
    loads, say) the choice is 'native', bf16 computed as bf16 as before this choice existed,
    for this process only, with a warning saying why."""
    path, key = user_cache.directory(FILE_NAME), cpu_key()
    table = _read(path)
    entry = table.get(key)
    source = f"stored in {path}"
    if not _valid(entry):
        try:
            entry = measure()
        except Exception as e:  # noqa: BLE001 -- a failed probe must not fail the user's program
            log.warning("could not time oneDNN's bf16 matmul (%s: %s); bf16 products stay bf16 "
                        "in this process (set %s=native|float32 to choose)", type(e).__name__,
                        e, ENV_VAR)
            return "native"
        table[key] = entry
        source = (f"measured now, stored in {path}" if _write(path, table)
                  else "measured now, not stored")
    log.info("oneDNN bf16 products on this CPU: %s (bf16 %.1f ms vs float32 %.1f ms per %s "
             "matmul; %s)", entry["choice"], entry["bf16_ms"], entry["float32_ms"],
             "x".join(map(str, PROBE_SHAPE)), source)
    _made.append(entry["choice"])
    return entry["choice"]


def _valid(entry) -> bool:
    """Whether a stored entry is one ``measure`` could have written (else it is measured anew):
    a known choice and two finite, positive times."""
    return (isinstance(entry, dict) and entry.get("choice") in ("native", "float32")
            and all(_time(entry.get(t)) for t in ("bf16_ms", "float32_ms")))


def _time(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value)) and value > 0
    except OverflowError:  # an int too large for a float
        return False


def measure() -> dict:
    """Times oneDNN's matmul of ``PROBE_SHAPE`` in bf16 and float32 (best of ``PROBE_REPEATS``,
    alternated) and returns ``{"choice", "bf16_ms", "float32_ms", "shape_mkn"}``: 'native' when
    bf16 takes at most float32's time. Runs eagerly, also while a program is being traced.
    Raises RuntimeError when the matmul handler is unavailable."""
    from jaxvision.layers import onednn_matmul

    if not onednn_matmul.available():
        raise RuntimeError(f"oneDNN matmul unavailable: {onednn_matmul.why_unavailable()}")
    m, k, n = PROBE_SHAPE
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    best = {}
    # Eager also inside a trace; the probe's own copies are allowed under a user's
    # ``jax.transfer_guard('disallow')``.
    with jax.ensure_compile_time_eval(), jax.transfer_guard("allow"):
        run = {dt: jax.jit(functools.partial(onednn_matmul.raw_matmul, False, False))
               for dt in ("bfloat16", "float32")}
        ops = {dt: (jax.device_put(a.astype(jnp.dtype(dt))), jax.device_put(b.astype(jnp.dtype(dt))))
               for dt in run}
        for dt in run:  # compile and warm up
            run[dt](*ops[dt]).block_until_ready()
        for _ in range(PROBE_REPEATS):
            for dt in run:
                t0 = time.perf_counter()
                run[dt](*ops[dt]).block_until_ready()
                best[dt] = min(best.get(dt, np.inf), 1e3 * (time.perf_counter() - t0))
    return {"choice": "native" if best["bfloat16"] <= best["float32"] else "float32",
            "bf16_ms": round(best["bfloat16"], 2), "float32_ms": round(best["float32"], 2),
            "shape_mkn": list(PROBE_SHAPE)}


def _read(path: str) -> dict:
    """The stored table; {} for a missing, unreadable or damaged file (whatever its damage:
    bad JSON, wrong type, nesting too deep to parse)."""
    try:
        with open(path) as f:
            table = json.load(f)
        return table if isinstance(table, dict) else {}
    except (OSError, ValueError, RecursionError, MemoryError):
        return {}


def _write(path: str, table: dict) -> bool:
    """Stores the table (``user_cache.write_atomically``); whether it was stored. Where the
    cache is not writable the choice holds for this process only."""
    if user_cache.write_atomically(path, lambda f: json.dump(table, f, indent=1, sort_keys=True)):
        return True
    log.info("could not store the oneDNN bf16 choice in %s: each process measures anew; set "
             "%s=native|float32 to skip that", path, ENV_VAR)
    return False
