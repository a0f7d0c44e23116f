"""End to end: seconds for the default job to reach 97% test top-1; input pipeline vs train step.

    python -m benchmarks.end_to_end [--config configs/mnist5k_lenet.py] [--target 0.97]
        [--stop-at-target] [--skip-train] [--skip-pipeline] [--out FILE]

1. Runs ``python -m jaxvision.train --config <config> --workdir <tmp>`` as users do, watches the
   workdir's ``metrics.jsonl`` as lines arrive, and reports the wall time (from launching the
   process, so it includes start-up, data loading and compilation) of the first evaluation
   (``val/top1`` during training, ``test/top1`` at the end) that reaches the target, the final
   test top-1 and the whole job's time (``--stop-at-target`` stops it at the target instead).
2. Input pipeline images/s against what the train step consumes:
   * the job's own training pipeline (``data.build(config.data, 'train', ...)``) against the
     job's train step (``benchmarks.throughput`` on the job's model, batch and resolution);
   * ``benchmarks/input_pipeline.py`` (mock ImageNet at 224 px and mock CIFAR-10 at 32 px with the
     default augmentation) against resnet50's train step at 224 px / resnet18's at 32 px.
   A pipeline slower than its train step starves the accelerator; on this CPU both share the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _top1(record: dict) -> tuple[str, float] | None:
    """(key, value) of the evaluation top-1 in a metrics.jsonl record ('val/top1', 'test/top1')."""
    for key, value in record.items():
        k = key.lower()
        if k.startswith("train") or not isinstance(value, int | float):
            continue
        if k.endswith("top1") or k.endswith("top_1"):
            return key, float(value)
    return None


def time_to_accuracy(config: str, target: float, stop_at_target: bool, timeout: float) -> dict:
    workdir = tempfile.mkdtemp(prefix="jv_e2e_")
    metrics = os.path.join(workdir, "metrics.jsonl")
    cmd = [sys.executable, "-m", "jaxvision.train", "--config", config, "--workdir", workdir]
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen, evals, reached = 0, [], None
    try:
        while True:
            done = proc.poll() is not None
            if os.path.exists(metrics):
                with open(metrics) as f:
                    lines = f.read().splitlines()
                for line in lines[seen:]:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        break  # a line still being written: read it next time
                    seen += 1
                    found = _top1(rec)
                    if found is not None:
                        key, acc = found
                        t = time.perf_counter() - start
                        evals.append({"seconds": round(t, 2), "step": rec.get("step"),
                                      "key": key, "top1": acc})
                        if reached is None and acc >= target:
                            reached = evals[-1]
            if done or (reached and stop_at_target):
                break
            if time.perf_counter() - start > timeout:
                break
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.terminate()  # only the process this function started
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    tail = (proc.stdout.read() if proc.stdout else "")[-1500:]
    return {
        "config": config,
        "target_top1": target,
        "seconds_to_target": reached["seconds"] if reached else None,
        "step_at_target": reached["step"] if reached else None,
        "top1_at_target": reached["top1"] if reached else None,
        "key_at_target": reached["key"] if reached else None,
        "final_test_top1": next((e["top1"] for e in reversed(evals) if "test" in e["key"]), None),
        "evals": evals,
        "total_seconds": round(time.perf_counter() - start, 2),
        "stopped_at_target": bool(reached and stop_at_target),
        "returncode": proc.returncode,
        "log_tail": tail if not reached else "",
        "workdir": workdir,
    }


def job_pipeline_rate(config_path: str, batches: int) -> dict:
    """Images/s of the job's own training pipeline (after one warm-up batch)."""
    import importlib.util

    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    from jaxvision import data

    spec = importlib.util.spec_from_file_location("jv_e2e_recipe", config_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = module.get_config()
    pipe = data.build(cfg.data, "train", global_batch_size=cfg.batch_size, train=True, seed=0,
                      process_index=0, process_count=1)
    it = iter(pipe)
    b = next(it)
    t0 = time.perf_counter()
    for _ in range(batches):
        b = next(it)
    dt = time.perf_counter() - t0
    return {"model": cfg.model.name, "batch": cfg.batch_size,
            "image_shape": list(b["image"].shape[1:]),
            "pipeline_img_per_s": cfg.batch_size * batches / dt}


def step_rate(model: str, batch: int, res: int, steps: int) -> float:
    from benchmarks.throughput import benchmark

    r = benchmark(model, batch, res, steps=steps, warmup=1, infer=False, probe=False)
    return r["train_img_per_s"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="configs/mnist5k_lenet.py")
    p.add_argument("--target", type=float, default=0.97)
    p.add_argument("--stop-at-target", action="store_true",
                   help="stop the job once an evaluation reaches the target (default: run it to "
                   "the end, which also evaluates the test split)")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-pipeline", action="store_true")
    p.add_argument("--imagenet", action="store_true",
                   help="also compare mock ImageNet 224 px input with resnet50's step (slow)")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "end_to_end.json"))
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    result = {"kind": "end_to_end"}
    if not args.skip_train:
        r = time_to_accuracy(args.config, args.target, args.stop_at_target, args.timeout)
        result["time_to_accuracy"] = r
        if r["seconds_to_target"] is not None:
            print(f"{args.config}: {r['key_at_target']} >= {args.target} after "
                  f"{r['seconds_to_target']:.1f} s (step {r['step_at_target']}, "
                  f"top-1 {r['top1_at_target']:.4f}); final test top-1 {r['final_test_top1']}, "
                  f"whole job {r['total_seconds']:.1f} s", flush=True)
        else:
            print(f"{args.config}: did not reach {args.target} (evals: {r['evals']})\n"
                  f"{r['log_tail']}", flush=True)
    if not args.skip_pipeline:
        rows = []
        job = job_pipeline_rate(args.config, batches=20)
        res = job["image_shape"][0]
        job["train_step_img_per_s"] = step_rate(job["model"], job["batch"], res, steps=10)
        rows.append({"what": f"job pipeline ({os.path.basename(args.config)})", **job})
        from benchmarks import input_pipeline

        mocks = [("cifar10", 32, "resnet18", 64)]
        if args.imagenet:
            mocks.append(("imagenet2012", 224, "resnet50", 16))
        for name, size, model, batch in mocks:
            m = input_pipeline.measure(name, size, batch, 10, 512)
            rows.append({"what": f"mock {name} (input_pipeline.py)", "model": model,
                         "batch": batch, "image_shape": [size, size, 3],
                         "pipeline_img_per_s": m["images_per_s"],
                         "train_step_img_per_s": step_rate(model, batch, size, steps=3)})
        for row in rows:
            row["pipeline_over_step"] = row["pipeline_img_per_s"] / row["train_step_img_per_s"]
            print(f"{row['what']:38s} pipeline {row['pipeline_img_per_s']:9.1f} img/s vs "
                  f"{row['model']} train step {row['train_step_img_per_s']:9.1f} img/s "
                  f"(x{row['pipeline_over_step']:.2f})", flush=True)
        result["pipeline"] = rows
    from benchmarks.throughput import machine_info

    result.update(machine_info())
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
