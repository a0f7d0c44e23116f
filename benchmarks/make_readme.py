"""Regenerate benchmarks/README.md from the JSON results under benchmarks/results/.

    python -m benchmarks.make_readme [--results benchmarks/results] [--out benchmarks/README.md]

Result files (each written by a benchmark script):
* ``throughput_*.json``: ``python -m benchmarks.throughput ... --out benchmarks/results/throughput_X.json``
* ``compare_*.json``: ``python -m benchmarks.compare`` (jaxvision vs Keras-JAX);
* ``scaling_*.json``: ``python -m benchmarks.scaling`` (jit vs pmap, 1-8 devices);
* ``sharding.json``: ``python -m benchmarks.sharding --out benchmarks/results/sharding.json``
  (per-device memory under DP / FSDP / FSDP+model);
* ``end_to_end.json``: ``python -m benchmarks.end_to_end``;
* ``remat.json``: ``python -m benchmarks.remat --out benchmarks/results/remat.json`` (issue 17);
* ``startup.json``: ``python -m benchmarks.startup`` (one label per code version);
* ``vs_torch.json``: ``python -m benchmarks.vs_torch --out benchmarks/results/vs_torch.json``;
* ``time_to_result.json``: paired whole-process timings against the PyTorch peer and the
  issue-15 targets (``benchmarks/peer_torch_lenet.py``), written by hand from the measurement.
"""

from __future__ import annotations

import argparse
import glob
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Peers measured on this machine (issue 7): ResNet-50 training, batch 16, 224 px, float32.
PEERS = [
    ("Keras 3 (JAX backend)", 0.75),
    ("Flax ImageNet example", 1.25),
    ("PyTorch CPU (torchvision, oneDNN)", 3.97),
    ("PyTorch CPU, bf16 autocast", 7.87),
]


def _load(results_dir):
    out = {}
    for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
        with open(path) as f:
            try:
                out[os.path.basename(path)] = json.load(f)
            except json.JSONDecodeError:
                continue
    return out


def _g(x, fmt, default="n/a"):
    try:
        return format(x, fmt)
    except (TypeError, ValueError):
        return default


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def throughput_section(results):
    rows = []
    for name, r in results.items():
        if not name.startswith("throughput_"):
            continue
        rows.append([
            r["model"], r["batch"], r["res"], r["dtype"], f"{r['parallel']} x{r['devices']}",
            _g(r.get("train_img_per_s"), ".2f"), _g(r.get("infer_img_per_s"), ".2f"),
            _g(r.get("compile_s"), ".1f"), _g(r.get("flops_per_img", 0) / 1e9, ".2f"),
            _g(100 * r["mfu"], ".1f") + "%" if "mfu" in r else "n/a",
            _g(r.get("peak_bytes", 0) / 2**20, ".0f") + ("" if "mem_temp_bytes" in r else "*"),
            _g((r.get("loadavg") or [None])[0], ".1f"),
            " ".join(x for x in (r.get("xla_flags", "").replace(
                "--xla_force_host_platform_device_count=1", "").strip(),
                f"--bf16-dots {r['bf16_dots']}" if r.get("bf16_dots", "xla") != "xla" else "",
                f"conv {r.get('conv_impl', 'xla')}")
                if x) or "-",
        ])
    if not rows:
        return ""
    rows.sort(key=lambda r: (r[0], r[3], r[12]))
    return "## Throughput (`benchmarks/throughput.py`)\n\n" + _table(
        ["model", "batch", "res", "dtype", "parallel", "train img/s", "infer img/s",
         "compile s", "train GFLOP/img", "MFU", "peak MiB", "load", "flags"], rows
    ) + (
        "\n\nMFU = achieved train FLOP/s (XLA cost analysis of the lowered step, i.e. the model's FLOPs before XLA rewrites them) / the best "
        "matmul FLOP/s measured in the same process for the compute dtype. `load` = 1-minute "
        "load average when the run ended (2 cores; > 2 means shared). `*`: measured before the "
        "memory fix, from `peak_memory_in_bytes` alone, which on XLA:CPU leaves out temporaries "
        "(an under-estimate).\n"
    )


def compare_section(results):
    parts = []
    for name, r in results.items():
        if not name.startswith("compare_"):
            continue
        a = r["args"]
        rows = []
        for row in r["rows"]:
            jv, kr = row.get("jaxvision") or {}, row.get("keras") or {}
            rows.append([
                row["model"], _g(jv.get("train_img_per_s"), ".2f"), _g(jv.get("compile_s"), ".1f"),
                _g(100 * jv["mfu"], ".1f") + "%" if "mfu" in jv else "n/a",
                _g(kr.get("train_img_per_s"), ".2f"), _g(kr.get("compile_s"), ".1f"),
                _g(100 * kr["mfu"], ".1f") + "%" if "mfu" in kr else "n/a",
                _g(row.get("ratio"), ".2f") + "x" if row.get("ratio") else "n/a",
                _g((jv.get("loadavg") or [None])[0], ".1f"),
            ])
        flags = a.get("xla_flags") or "default"
        impl = next((row["jaxvision"].get("conv_impl") for row in r["rows"]
                     if row.get("jaxvision")), "xla")
        flags += f", jaxvision convolutions: {impl}"
        parts.append(
            f"### batch {a['batch']}, {a['res']} px, {a['dtype']}, XLA flags: {flags} "
            f"(`{name}`)\n\n" + _table(
                ["model", "jaxvision img/s", "compile s", "MFU", "Keras-JAX img/s", "compile s",
                 "MFU", "jaxvision / Keras", "load"], rows)
        )
    if not parts:
        return ""
    return ("## jaxvision vs Keras 3 on JAX (`benchmarks/compare.py`)\n\nSame model, batch, "
            "resolution, SGD (lr 0.1, momentum 0.9), softmax cross-entropy; training steps. "
            "Both frameworks run in one process per model and their timed steps alternate, so "
            "the ratio holds under a changing load; absolute img/s depend on the load. Each MFU "
            "uses its own framework's FLOPs (XLA cost analysis of its lowered step; n/a when "
            "run with `--no-keras-flops`).\n\n" + "\n\n".join(parts) + "\n")


def scaling_section(results):
    parts = []
    for name, r in results.items():
        if not name.startswith("scaling_"):
            continue
        rows = [[x["parallel"], x["devices"], _g(1e3 * x["train_step_s"], ".1f"),
                 _g(x["train_img_per_s"], ".1f"), _g(x["compile_s"], ".1f"),
                 _g(x["peak_bytes_per_device"] / 2**20, ".2f"),
                 _g(x["max_abs_param_diff_vs_jit1"], ".1e"), "yes" if x["equal"] else "NO"]
                for x in r["rows"]]
        parts.append(
            f"### {r['model']}, global batch {r['batch']}, {r['res']} px (`{name}`)\n\n"
            + (f"{r['note']}\n\n" if r.get("note") else "")
            + _table(["parallel", "devices", "step ms", "img/s", "compile s", "MiB / device",
                      "max abs param diff vs jit x1", "equal"], rows)
        )
    if not parts:
        return ""
    return "## Scaling: jit vs pmap (`benchmarks/scaling.py`)\n\n" + "\n\n".join(parts) + "\n"


def sharding_section(results):
    r = results.get("sharding.json")
    if not r:
        return ""
    from benchmarks.sharding import format_table

    first = r["rows"][0]
    return ("## Memory per device: DP vs FSDP vs FSDP + tensor parallel (`benchmarks/sharding.py`)"
            "\n\n"
            f"8 simulated devices, AdamW, global batch {first['batch']}, {first['res']} px, "
            f"{first['dtype']}; abstract state and compiled step (nothing allocated). 'vs DP' is "
            "the share of the unsharded parameters + optimizer state one device holds.\n\n"
            + format_table(r["rows"]) + "\n")
def remat_section(results):
    """Issue 17: activation memory vs step time per rematerialization policy (remat.json)."""
    r = results.get("remat.json")
    if not r:
        return ""
    from benchmarks import remat

    rows = r["rows"]
    return ("## Rematerialization (`benchmarks/remat.py`)\n\n"
            f"`config.remat` per policy, float32, batch {rows[0]['batch']}, {rows[0]['res']} px, "
            "one device. `saved` = what the forward pass keeps for the backward pass (the "
            "residuals of `jax.vjp`, sized abstractly: the same on every backend); `temp` / "
            "`peak` = the compiled train step's `memory_analysis()`. On XLA:CPU the smaller "
            "residuals did not become smaller temporaries (its buffer assignment grew by ~10% "
            "with remat); measure `temp` on the accelerator you train on. Step times were taken "
            "with the 2-core machine shared (load "
            f"{_g((r.get('loadavg') or [None])[0], '.1f')} at the end, above 20 during the run): "
            "they are noise, the memory columns are not.\n\n"
            + remat.table(rows) + "\n")


def end_to_end_section(results):
    r = results.get("end_to_end.json")
    if not r:
        return ""
    out = ["## End to end (`benchmarks/end_to_end.py`)\n"]
    t = r.get("time_to_accuracy")
    if t:
        if t.get("seconds_to_target") is not None:
            out.append(f"- `{t['config']}`: `{t.get('key_at_target')}` >= "
                       f"{100 * t['target_top1']:.0f}% after **{t['seconds_to_target']:.1f} s** "
                       f"wall time from launch (step {t['step_at_target']}, top-1 "
                       f"{t['top1_at_target']:.4f}); final test top-1 "
                       f"{_g(t.get('final_test_top1'), '.4f')}, whole job "
                       f"{t['total_seconds']:.1f} s (load {_g((r.get('loadavg') or [None])[0], '.1f')}).")
        else:
            out.append(f"- `{t['config']}` did not reach {t['target_top1']} (see the JSON).")
    for row in r.get("pipeline", []):
        out.append(f"- {row['what']}: input pipeline {row['pipeline_img_per_s']:.0f} img/s vs "
                   f"{row['model']} train step {row['train_step_img_per_s']:.0f} img/s "
                   f"(pipeline / step = {row['pipeline_over_step']:.2f}).")
    return "\n".join(out) + "\n"


def startup_section(results):
    """Issue 15: where the time goes per command (startup.json) and time to result vs peers
    (time_to_result.json: rows written from paired whole-process measurements)."""
    out = []
    r = results.get("startup.json")
    if r:
        from benchmarks import startup

        out += ["## From command to answer (`benchmarks/startup.py`)\n",
                "Whole process (wall and CPU seconds) and its CPU seconds per phase (imports, XLA "
                "compilation or cache load, datasets and image files, init, checkpoint restore, "
                "outputs, the rest). `before` = the code before issue 15, `after` = with it; "
                "evaluate / predict / explain read the same finished default-job run; train is 100 "
                "steps of each version's own default recipe (`--train_steps 100`; before: batch "
                "128 through tf.data, after: batch 64 from device memory), its whole-process row "
                "with a cold compilation cache, its phases with the cache the first run filled. "
                "`dataset` counts only the hooked functions (data.pipeline.build as reached through "
                "the lazy package is not hooked, its time is in imports/work). The machine was "
                "shared (load 20-29 on 2 cores): compare CPU seconds. `s4 before` / `s4 after` "
                "(fourth session: TensorFlow imported on first use, bundled-dataset metadata and "
                "the evaluation transform without it): `--commands predict,evaluate --warm` (each "
                "command run once untimed first, so the compilation cache is warm) on one "
                "100-step default-job run, before = main at 040f9a1, load 21-25. `s5 idle` "
                "(fifth session, nothing else running, load ~1.8): `--commands "
                "train,evaluate,predict --warm` on the full 744-step default job; evaluate reads "
                "the bundled split as NumPy arrays (no TensorFlow), plots only with --plots; the "
                "train row is the code before train stopped importing TensorFlow (its paired "
                "whole-process time after that change is in the time-to-result table). `s6 idle` "
                "(sixth session, idle): the same four commands `--runs 1 --warm` on the 496-step "
                "default job with few-channel convolutions, tiled max pooling and the epochs' "
                "orders drawn once (its train row runs with a fresh compilation cache; the "
                "warm-cache whole process is 7.2 s, see below).\n",
                startup.table(r) + "\n"]
    t = results.get("time_to_result.json")
    if t:
        out += ["## Time to result vs targets (issue 15)\n", t.get("note", "") + "\n",
                _table(["what", "jaxvision", "peer / target", "ratio"],
                       [[x["what"], x["jaxvision"], x["peer"], x["ratio"]] for x in t["rows"]])
                + "\n"]
    return "\n".join(out)


def bf16_section():
    path = os.path.join(ROOT, "experiments", "xla_cpu_conv", "vit_bf16_results.json")
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        r = json.load(f)
    rows = [[k, _g(v["train_img_per_s"], ".2f"), _g(v["speedup_vs_f32"], ".2f") + "x",
             _g(v["compile_s"], ".0f")] for k, v in r["runs"].items()]
    return (f"## bf16 vs float32 ({r['model']}, batch {r['batch']}, {r['res']} px, training)\n\n"
            "`experiments/xla_cpu_conv/vit_bf16.py`: the three steps interleaved in one process "
            f"(load {r['loadavg']:.1f} at the end). `bf16_amx` = `--bf16-dots amx`.\n\n"
            + _table(["variant", "train img/s", "vs float32", "compile s"], rows) + "\n")


def bf16_conv_section(results):
    """Issue 15: ResNet-50 training with the bf16 k x k convolution choice (layers.tap_conv), and
    the cost model's own fit (jaxvision/layers/conv_cost_table.json)."""
    r = results.get("bf16_conv_resnet50.json")
    if not r:
        return ""
    rows = [[k, _g(v["train_step_cpu_s"], ".2f"), _g(v["train_img_per_cpu_s"], ".2f"),
             _g(v["train_step_s"], ".1f"), _g(v["loadavg"][0], ".0f")] for k, v in r["runs"].items()]
    out = ["## bf16 k x k convolutions chosen per shape (ResNet-50, batch 16, 224 px, training)\n",
           f"`{r['command']}`; {r['note']}.\n",
           _table(["variant", "CPU s / step", "img per CPU s", "wall s / step", "load"], rows)
           + "\n"]
    from benchmarks import conv_cost_table
    from jaxvision.layers import conv_cost

    table = conv_cost.load_table()
    out.append("The cost model behind the choice (`python -m benchmarks.conv_cost_table`, "
               f"{len(table['rows'])} shapes, batch {table['batch']}, process CPU ms, load "
               f"{table['load_average']}), over its own table:\n\n"
               + "\n".join(f"- {line}" for line in
                           conv_cost_table.report(table["rows"], table["coef"])) + "\n")
    return "\n".join(out)


def xla_options_section():
    """Issue 15: XLA:CPU options (oneDNN, fast math, ...) on float32 steps
    (experiments/onednn_study/run.py)."""
    paths = sorted(glob.glob(os.path.join(ROOT, "experiments", "onednn_study", "results_*.json")))
    rows = []
    for path in paths:
        with open(path) as f:
            for r in json.load(f):
                rows.append([r["model"], r["setting"], _g(r.get("cpu_s_per_step"), ".2f"),
                             _g(r.get("wall_s_per_step"), ".1f"), _g(r.get("load"), ".0f"),
                             "error" if "error" in r else ""])
    if not rows:
        return ""
    return ("## XLA:CPU options, float32 training steps, batch 16 "
            "(`experiments/onednn_study/run.py`)\n\nThe study and its conclusion: "
            "`experiments/onednn_study/README.md`.\n\n"
            + _table(["model", "setting", "CPU s / step", "wall s / step", "load", ""], rows)
            + "\n")


def vs_torch_section(results):
    """Issue 15: jaxvision vs PyTorch CPU training in one run (``benchmarks/vs_torch.py``)."""
    r = results.get("vs_torch.json")
    if not r:
        return ""
    from benchmarks import vs_torch

    return ("## Training vs PyTorch CPU, same run (`benchmarks/vs_torch.py`)\n\n"
            f"batch {r['rows'][0]['batch']}, {r['rows'][0]['res']} px, SGD momentum 0.9, 1000 "
            "classes; jaxvision's library step vs torchvision/timm with `torch.optim.SGD` "
            "(bf16: jaxvision's bf16 compute, PyTorch's `torch.autocast`); each row's two "
            f"processes ran one after the other. {r.get('note', '')}\n\n"
            + vs_torch.table(r["rows"], r["bf16_speedup"]) + "\n")


def machine_section(results):
    info = next((r for r in results.values() if "jax" in r and "cpu" in r), None)
    if info is None:
        return ""
    return (
        "## Machine and versions\n\n"
        f"- device: `{info['device']}`, CPU: {info['cpu']} ({info['cpu_count']} cores)\n"
        f"- python {info['python']}, jax {info['jax']}, jaxlib {info['jaxlib']}, "
        f"flax {info['flax']}, optax {info['optax']}\n"
        "- the machine was shared with other jobs while some of these ran: see the `load` "
        "column.\n"
    )


def build(results_dir):
    results = _load(results_dir)
    peers = _table(["peer (ResNet-50, batch 16, 224 px, float32, training)", "img/s"],
                   [[n, v] for n, v in PEERS])
    sections = [
        "# jaxvision benchmarks\n",
        "Generated by `python -m benchmarks.make_readme` from `benchmarks/results/*.json`; do not "
        "edit by hand. Every number comes from one of the commands in the section headings.\n",
        machine_section(results),
        compare_section(results),
        bf16_section(),
        bf16_conv_section(results),
        xla_options_section(),
        throughput_section(results),
        scaling_section(results),
        sharding_section(results),
        remat_section(results),
        end_to_end_section(results),
        startup_section(results),
        vs_torch_section(results),
        "## Peers measured on this machine (issue 7)\n\n" + peers + "\n",
        "## Reproduce\n\n```\n"
        "python -m benchmarks.compare --models resnet50,efficientnet_b0,mobilenet_v2 "
        "--batch 16 --res 224\n"
        "python -m benchmarks.throughput --model vit_s16 --batch 16 --res 224 --dtype bfloat16 "
        "--out benchmarks/results/throughput_vit_s16_bf16.json\n"
        "python -m benchmarks.scaling\n"
        "python -m benchmarks.sharding --out benchmarks/results/sharding.json\n"
        "python -m benchmarks.remat --out benchmarks/results/remat.json\n"
        "python -m benchmarks.vs_torch --torch-python /path/to/torch/python "
        "--out benchmarks/results/vs_torch.json\n"
        "python -m benchmarks.end_to_end\n"
        "python -m benchmarks.startup --out benchmarks/results/startup.json --label after\n"
        "python -m benchmarks.make_readme\n```\n"
        "\nThe XLA CPU convolution study is in `experiments/xla_cpu_conv/README.md`.\n",
    ]
    return "\n".join(s for s in sections if s)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default=os.path.join(ROOT, "benchmarks", "results"))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "README.md"))
    args = p.parse_args(argv)
    text = build(args.results)
    with open(args.out, "w") as f:
        f.write(text)
    print(f"wrote {args.out} ({len(text.splitlines())} lines)")


if __name__ == "__main__":
    main()
