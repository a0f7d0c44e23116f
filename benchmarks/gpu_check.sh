#!/usr/bin/env bash
# GPU check for an NVIDIA machine, all within ~10 minutes:
#   1. installs the `cuda` extra (JAX with CUDA 12) into the active environment;
#   2. runs the tests that touch devices on the GPU (layers, model forwards, train steps);
#   3. prints ResNet-50 / EfficientNet-B0 / ViT-B/16 bf16 training img/s, MFU and peak memory.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # from the repository root, venv active
#
# Batch sizes: NVIDIA DeepLearningExamples' published mixed-precision training figures use 256
# images per GPU for ResNet-50 v1.5 and EfficientNet-B0 (PyTorch, A100/H100 80 GB); there is no
# NVIDIA figure for ViT-B/16, so it runs DeiT's 128 per GPU (1024 over 8 GPUs). MFU is model
# FLOPs (XLA's cost analysis of the train step, benchmarks.throughput) x img/s over the GPU's
# published dense bf16 peak (table below; an unknown GPU falls back to throughput's measured
# matmul peak). Peak memory is XLA's memory analysis of the compiled step.
# Not run on a GPU by its author (no GPU was lent to issue 15).
set -euo pipefail
OUT=${1:-gpu_check_out}
mkdir -p "$OUT"
START=$(date +%s)
step() { echo "== [$(( $(date +%s) - START )) s] $*" >&2; }

command -v nvidia-smi >/dev/null || { echo "error: nvidia-smi not found: this check needs an NVIDIA GPU" >&2; exit 2; }
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
step "GPU: $GPU"

step "install the cuda extra"
timeout 240 pip install -q -e ".[cuda,dev]"
python - <<'EOF'
import jax
assert jax.default_backend() == "gpu", f"JAX sees no GPU: {jax.devices()}"
print("jax", jax.__version__, jax.devices())
EOF

step "device tests on the GPU"
# conftest.py defaults to 8 simulated CPU devices and hides GPUs; explicit values override it.
CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0} XLA_FLAGS="" timeout 240 python -m pytest -q -n 0 \
  tests/layers tests/models/test_cnn_forward.py tests/training/test_device_data.py \
  2>&1 | tail -n 15 | tee "$OUT/tests.txt" || echo "(tests failed or timed out: see $OUT/tests.txt)" >&2

step "bf16 training throughput"
for spec in "resnet50 256" "efficientnet_b0 256" "vit_b16 128"; do
  set -- $spec
  timeout 120 python -m benchmarks.throughput --model "$1" --batch "$2" --dtype bfloat16 \
    --steps 10 --warmup 3 --no-infer --json --out "$OUT/$1.json" >/dev/null \
    || echo "(throughput of $1 failed or timed out)" >&2
done

GPU="$GPU" OUT="$OUT" python - <<'EOF'
import json, os
# Published dense bf16 tensor-core peaks (NVIDIA data sheets), FLOP/s.
PEAKS = {"H200": 989.4e12, "H100 SXM": 989.4e12, "H100 PCIe": 756.5e12, "H100": 989.4e12,
         "A100": 312e12, "L40S": 362.05e12, "L4": 121e12, "A10": 125e12, "V100": 125e12}
gpu = os.environ["GPU"]
peak = next((v for k, v in PEAKS.items() if k in gpu), None)
print(f"| model | batch | img/s | MFU | peak memory (GiB) |   ({gpu}, bf16)")
print("|---|---:|---:|---:|---:|")
for name in ("resnet50", "efficientnet_b0", "vit_b16"):
    path = os.path.join(os.environ["OUT"], f"{name}.json")
    if not os.path.exists(path):
        print(f"| {name} | - | failed | - | - |")
        continue
    r = json.load(open(path))
    ips = r["train_img_per_s"] if "train_img_per_s" in r else r["batch"] / r["train_step_s"]
    flops = r.get("flops_per_img")
    mfu = ips * flops / peak if (peak and flops) else r.get("mfu")
    mfu_s = f"{100 * mfu:.1f}%" if mfu else "-"
    print(f"| {name} | {r['batch']} | {ips:.0f} | {mfu_s} | {r['peak_bytes'] / 2**30:.1f} |")
EOF
step "done"
