#!/usr/bin/env bash
# The CUDA check in one go (`make gpu-check`): the tests marked `cuda` (tests/gpu: the adaptive
# conv's CUDA kernel against its CPU path, a training step in fp32 and AMP and inference of
# every method's config, the trainer end to end with AMP), then tools/benchmark.py on the CUDA
# device; prints a summary of pass/fail and timings. Without a CUDA device it says so and exits 0.
#
#   tools/gpu_check.sh [extra pytest args]
#   GPU_CHECK_OUT=dir    reports (junit xml, logs, benchmark tables); default output/gpu_check
#   GPU_CHECK_QUICK=1    fewer benchmark iterations
set -uo pipefail
case "${1:-}" in
    -h|--help)  # the header above, without the shebang
        sed -n '2,/^set /p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
        exit 0 ;;
esac
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
OUT="${GPU_CHECK_OUT:-output/gpu_check}"

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "== GPU check summary =="
    echo "no CUDA device (torch.cuda.is_available() is False): nothing run, nothing failed"
    exit 0
fi
mkdir -p "$OUT"
"$PYTHON" -c "import torch; print('device:', torch.cuda.get_device_name(0), '| torch', torch.__version__, '| CUDA', torch.version.cuda)" | tee "$OUT/device.txt"

ITERS=10; WARMUP=3
if [ -n "${GPU_CHECK_QUICK:-}" ]; then ITERS=3; WARMUP=1; fi
SUMMARY=()
FAILED=0

# step NAME TIMEOUT_S COMMAND...: run, log to $OUT/NAME.log, record PASS/FAIL and seconds
step() {
    local name="$1" limit="$2"; shift 2
    echo; echo "== $name: $*"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    local rc=${PIPESTATUS[0]}
    local dt=$((SECONDS - t0)) status=PASS
    if [ "$rc" -eq 124 ]; then status="FAIL (timeout ${limit}s)"; elif [ "$rc" -ne 0 ]; then status="FAIL (exit $rc)"; fi
    [ "$status" = PASS ] || FAILED=1
    SUMMARY+=("$(printf '%-28s %-20s %5ds' "$name" "$status" "$dt")")
}

step cuda-tests 420 "$PYTHON" -m pytest tests/gpu -m cuda -v -rA --durations=0 -p no:cacheprovider \
    --junitxml="$OUT/cuda-tests.xml" "$@"
TESTS_LINE="$(grep -E '^=+ .*(passed|failed|error|skipped).* in [0-9.]+s' "$OUT/cuda-tests.log" | tail -n1)"

# benchmarks on CUDA: each model in a fresh process, random 800x800 images, train step and latency
SRTOD=configs/srtod/faster_rcnn_srtod_R50_fpn_visdrone_1x.py
# A: the plain twin; B: the method (README cost tables: B / A)
step bench-cfinet 300 "$PYTHON" tools/benchmark.py models \
    --config-a configs/cfinet/cfinet-plain_R50_fpn_visdrone_1x.py --config-b configs/cfinet/cfinet_R50_fpn_visdrone_1x.py \
    --image-size 800 800 --iters "$ITERS" --warmup "$WARMUP" --output "$OUT/bench-cfinet.md" \
    --opts-a train.device=cuda --opts-b train.device=cuda
step bench-srtod 300 "$PYTHON" tools/benchmark.py models --config-a "$SRTOD" --config-b "$SRTOD" \
    --image-size 800 800 --iters "$ITERS" --warmup "$WARMUP" --output "$OUT/bench-srtod.md" \
    --opts-a train.device=cuda model.backbone.enabled=False --opts-b train.device=cuda
step bench-srtod-light 300 "$PYTHON" tools/benchmark.py models --config-a "$SRTOD" \
    --config-b configs/srtod/faster_rcnn_srtod-light_R50_fpn_visdrone_1x.py \
    --image-size 800 800 --iters "$ITERS" --warmup "$WARMUP" --output "$OUT/bench-srtod-light.md" \
    --opts-a train.device=cuda model.backbone.enabled=False --opts-b train.device=cuda
# SR-TOD's sampled inference against the full reconstruction on CUDA (same weights, the
# repository's real HIT-UAV images; threshold 0.3 so that random weights give a sparse map)
step consistency-srtod 300 env SOD2_DATASETS="$(pwd)/tests/fixtures/hituav-subset" "$PYTHON" tools/benchmark.py \
    consistency --config configs/srtod/faster_rcnn_srtod_R18s_fpn_hituav_cpu.py --dataset hituav_val \
    --max-images 17 --output "$OUT/consistency-srtod.md" \
    --opts-a train.device=cuda model.backbone.threshold.init=0.3 \
    --opts-b train.device=cuda model.backbone.threshold.init=0.3 model.backbone.sampled_inference=False

echo; echo "== GPU check summary ($(head -n1 "$OUT/device.txt"))"
printf '%s\n' "${SUMMARY[@]}"
echo "cuda tests: ${TESTS_LINE:-no pytest summary line}"
for f in "$OUT"/bench-*.md "$OUT"/consistency-*.md; do [ -f "$f" ] && { echo "-- $f"; cat "$f"; }; done
echo "reports: $OUT"
exit "$FAILED"
