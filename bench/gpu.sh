#!/usr/bin/env bash
# Training speed on a GPU machine (issue 6): mb2-ssd-lite, 300 px, batch 64, DataLoader
# workers = the machine's cores, fp32 and --amp (fp16 + gradient scaling), each beside its
# compute-only bound (same step on batches already on the GPU). Self-contained: it makes its
# own synthetic COCO-layout data first. Needs torch, torchvision, opencv; not pycocotools.
# About 3-4 minutes on one H100 with 16 cores; each of the 3 runs is cut at 100 s (under 6 min in all).
#
#   bench/gpu.sh                      # results: stdout (JSON lines + tables) and $OUT/*.jsonl
#   BENCH_CPU_SMOKE=1 bench/gpu.sh    # tiny CPU run that checks this script works (no GPU needed)
#
# Environment: OUT (result folder, default ./bench-gpu-results), WORKERS (default: nproc),
# BATCH (default 64), STEPS (timed steps per round, default 20), REPEATS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-bench-gpu-results}
mkdir -p "$OUT"
WORKERS=${WORKERS:-$(nproc)}
BATCH=${BATCH:-64}
STEPS=${STEPS:-20}
REPEATS=${REPEATS:-3}
DATA=$(mktemp -d)/data
trap 'rm -rf "$(dirname "$DATA")"' EXIT

python3 - <<'EOF'
import os, platform, torch, torchvision
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(f"# torch {torch.__version__}, torchvision {torchvision.__version__}, GPU {gpu}, "
      f"{len(os.sched_getaffinity(0))} CPUs, {platform.processor() or platform.machine()}", flush=True)
EOF

if [[ "${BENCH_CPU_SMOKE:-0}" != "0" ]]; then
    echo "# CPU smoke mode: tiny settings, device cpu"
    python3 -m vision.datasets.synthetic "$DATA" --train 16 --val 1 --image-size 160 120 --log-level warning
    COMMON=(--cpu-smoke --device cpu --workers 0 2)
else
    # 256 COCO-sized images; bench/train.py repeats them into one long epoch (no worker restarts)
    python3 -m vision.datasets.synthetic "$DATA" --train 256 --val 1 --image-size 640 480 --log-level warning
    COMMON=(--device cuda --batch-size "$BATCH" --workers "$WORKERS" --steps "$STEPS" --repeats "$REPEATS"
            --warmup 10 --compute-batches 8)
fi

run() {  # name, extra flags...
    local name=$1; shift
    echo "# mb2-ssd-lite $name"
    timeout 100 python3 bench/train.py --nets mb2-ssd-lite --data "$DATA" "${COMMON[@]}" "$@" \
        --json-out "$OUT/train_$name.jsonl" --log-level warning || echo "# $name FAILED (exit $?)"
}
run fp32
run amp --amp
run amp_channels_last --amp --memory-format channels_last --loader-variants "$WORKERS,threads=1"
echo "# results in $OUT/"
