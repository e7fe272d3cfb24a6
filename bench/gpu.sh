#!/usr/bin/env bash
# Training and evaluation speed on a lent GPU machine (issue 15), steady state, in under 8 minutes.
#
# Self-contained: makes its own synthetic COCO-layout data first (vision.datasets.synthetic), needs
# no network; torch, torchvision, opencv and the repository's requirements only.
# Prints JSON lines on stdout (one per measured case, from bench/train.py and bench/eval.py, plus
# one "gpu-env" line first and one "gpu-run" line per run); the tables and logs of each run go to
# $OUT/<run>.log, the JSON lines also to $OUT/<run>.jsonl.
#
# Runs, in priority order (a run that would not finish inside BUDGET_S is skipped and says so):
#   main_<net>      batch 128: compute-only bounds fp32, --amp (fp16 + GradScaler), amp + channels_last
#                   (MAIN_VARIANTS); real loader (WORKERS workers) with the fp32 step and with the amp step
#   eval_<net>      eval_ssd.py's loop end to end vs the pure forward (bench/eval.py --device cuda)
#   batch<B>_<net>  batch 64 and 256: amp bound and real loader with the amp step
#   compile_<net>   batch 128, amp: eager vs torch.compile'd step (COMPILE_NETS)
# Each case warms up WARMUP_S seconds (cuDNN autotuning, allocator growth, worker start-up), then is
# timed DURATION_S seconds (main runs: MAIN_DURATION_S) split over REPEATS rounds that alternate
# the cases; a main run is 5 cases x 12 s = 60 s of timed steady state.
#
#   bench/gpu.sh                      # on the GPU machine
#   BENCH_CPU_SMOKE=1 bench/gpu.sh    # tiny CPU run that checks the plumbing (no GPU needed)
#
# Environment: OUT (default ./bench-gpu-results), WORKERS (default: nproc), NETS (default
# "mb2-ssd-lite mb1-ssd"), BATCHES (sweep, default "64 256"), MAIN_BATCH (128), WARMUP_S (5),
# DURATION_S (6), MAIN_DURATION_S (12), REPEATS (2), MAIN_VARIANTS ("amp amp+channels_last"),
# COMPILE_NETS (default "mb2-ssd-lite"; "" skips), BUDGET_S (default 450: the whole script, data
# generation included; estimated ~420 s with the defaults).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-bench-gpu-results}
mkdir -p "$OUT"
WORKERS=${WORKERS:-$(nproc)}
NETS=${NETS:-mb2-ssd-lite mb1-ssd}
BATCHES=${BATCHES:-64 256}
MAIN_BATCH=${MAIN_BATCH:-128}
WARMUP_S=${WARMUP_S:-5}
DURATION_S=${DURATION_S:-6}
MAIN_DURATION_S=${MAIN_DURATION_S:-12}
MAIN_VARIANTS=${MAIN_VARIANTS:-amp amp+channels_last}
REPEATS=${REPEATS:-2}
COMPILE_NETS=${COMPILE_NETS-mb2-ssd-lite}
BUDGET_S=${BUDGET_S:-450}
SMOKE=${BENCH_CPU_SMOKE:-0}
AMP=(--amp)
AMP_VARIANT=amp
SLACK_S=40
TMP=$(mktemp -d)
DATA=$TMP/data
trap 'rm -rf "$TMP"' EXIT
export PYTHONUNBUFFERED=1

python3 - "$SMOKE" <<'EOF'
import json, os, platform, sys, torch, torchvision
cuda = torch.cuda.is_available()
p = torch.cuda.get_device_properties(0) if cuda else None
print(json.dumps({"bench": "gpu-env", "torch": torch.__version__, "torchvision": torchvision.__version__,
                  "gpu": torch.cuda.get_device_name(0) if cuda else None,
                  "gpu_memory_gib": round(p.total_memory / 2**30, 1) if p else None,
                  "cpus": len(os.sched_getaffinity(0)), "cpu": platform.processor() or platform.machine(),
                  "cpu_smoke": sys.argv[1] != "0"}), flush=True)
if not cuda and sys.argv[1] == "0":
    sys.exit("bench/gpu.sh: no CUDA device (BENCH_CPU_SMOKE=1 runs the tiny CPU check)")
EOF

if [[ "$SMOKE" != "0" ]]; then
    NETS=${SMOKE_NETS:-mb2-ssd-lite}
    BATCHES=4
    MAIN_BATCH=4
    COMPILE_NETS=""
    WARMUP_S=0.2
    # bf16 autocast is emulated (very slow) on CPUs without native bf16: the smoke run exercises the
    # same plumbing (a loader with its own compute variant, a base setting) with the layout instead
    AMP=(--memory-format channels_last)
    AMP_VARIANT=contiguous
    MAIN_VARIANTS=contiguous
    SLACK_S=240
    WORKERS=1
    python3 -m vision.datasets.synthetic "$DATA" --train 16 --val 4 --image-size 160 120 --log-level warning
    TRAIN=(--cpu-smoke --device cpu --warmup-seconds 0.2 --repeats 1)
    EVAL=(--device cpu --images 4 --batch-size 2 --repeats 1 --threads 1 --no-cocoeval)
    MAIN_DURATION_S=0.5
    DURATION_S=0.5
else
    # 256 COCO-sized images; bench/train.py repeats them into one long epoch (no worker restarts)
    python3 -m vision.datasets.synthetic "$DATA" --train 256 --val 256 --image-size 640 480 --log-level warning
    TRAIN=(--device cuda --warmup-seconds "$WARMUP_S" --repeats "$REPEATS" --steps 10 --compute-batches 8
           --compile-warmup 3)
    EVAL=(--device cuda --data "$DATA" --images 256 --batch-size 64 --workers "$WORKERS" --repeats 3)
fi

run() {  # name, seconds it may take, command...: JSON lines to stdout and $OUT/name.jsonl, the rest to $OUT/name.log
    local name=$1 limit=$2; shift 2
    local left=$((BUDGET_S - SECONDS))
    if ((limit > left)); then
        echo "{\"bench\": \"gpu-run\", \"run\": \"$name\", \"status\": \"skipped\", \"reason\": \"needs up to ${limit} s, ${left} s of BUDGET_S left\"}"
        return 0
    fi
    local t0=$SECONDS status=ok
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1 || status="failed (exit $?)"
    grep '^{' "$OUT/$name.log" | tee "$OUT/$name.jsonl" || true
    echo "{\"bench\": \"gpu-run\", \"run\": \"$name\", \"status\": \"$status\", \"seconds\": $((SECONDS - t0)), \"log\": \"$OUT/$name.log\"}"
}

# a run's time limit: warm-up + timed seconds per case, plus start-up (data, CUDA, cuDNN autotuning)
limit() {  # cases duration [extra]
    python3 -c "import math,sys; c,d,e=map(float,sys.argv[1:4]); print(math.ceil(c*($WARMUP_S+d+3)+$SLACK_S+e))" "$1" "$2" "${3:-0}"
}

read -r -a main_variants <<<"$MAIN_VARIANTS"
for net in $NETS; do
    run "main_$net" "$(limit $((3 + ${#main_variants[@]})) "$MAIN_DURATION_S")" \
        python3 bench/train.py --nets "$net" --data "$DATA" "${TRAIN[@]}" --batch-size "$MAIN_BATCH" \
        --duration "$MAIN_DURATION_S" --workers "$WORKERS" --compute-variants "${main_variants[@]}" \
        --loader-variants "$WORKERS,compute=$AMP_VARIANT" --log-level info
done
for net in $NETS; do
    run "eval_$net" "$(limit 2 10)" python3 bench/eval.py --nets "$net" "${EVAL[@]}" --log-level info
done
for b in $BATCHES; do
    for net in $NETS; do
        run "batch${b}_$net" "$(limit 2 "$DURATION_S")" python3 bench/train.py --nets "$net" --data "$DATA" \
            "${TRAIN[@]}" --batch-size "$b" --duration "$DURATION_S" "${AMP[@]}" --workers "$WORKERS" --log-level info
    done
done
for net in $COMPILE_NETS; do  # compiling forward + backward takes a minute or more
    run "compile_$net" "$(limit 2 "$DURATION_S" 150)" python3 bench/train.py --nets "$net" --data "$DATA" \
        "${TRAIN[@]}" --batch-size "$MAIN_BATCH" --duration "$DURATION_S" --amp --workers --compute-variants compile \
        --log-level info
done
echo "{\"bench\": \"gpu-run\", \"run\": \"all\", \"seconds\": $SECONDS, \"results\": \"$OUT\"}"
