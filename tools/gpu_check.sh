#!/usr/bin/env bash
# The CUDA check in one go (`make gpu-check`): the tests marked `cuda` (tests/gpu: the adaptive
# conv's CUDA kernel against its CPU path, a training step in fp32 and AMP and inference of
# every method's config, the trainer end to end with AMP), then tools/benchmark_{models,consistency}.py on the CUDA
# device, then the exported models under ONNX Runtime's CUDA and TensorRT execution providers
# (tools/check_export_parity.py: YOLOX-S, RT-DETR-R18vd and Faster R-CNN R50-FPN at 640 px,
# seeded random weights, PyTorch on CUDA as the reference; needs the onnxruntime-gpu package,
# else that step is reported as SKIP); prints a summary of pass/fail/skip and timings. Without
# a CUDA device it says so and exits 0.
#
#   tools/gpu_check.sh [extra pytest args]
#   tools/gpu_check.sh --ort-providers   only say which ONNX Runtime GPU providers are here
#                                        (exit 0: some, 3: none: onnxruntime-gpu is needed)
#   GPU_CHECK_OUT=dir    reports (junit xml, logs, benchmark and parity tables); default output/gpu_check
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

# ONNX Runtime's GPU execution providers available here, on one line (exit 3 when none)
ort_gpu_providers() {
    "$PYTHON" - <<'PY'
import sys
try:
    import onnxruntime as ort
except ImportError:
    print("onnxruntime is not installed: onnxruntime-gpu is needed for the CUDA/TensorRT providers")
    sys.exit(3)
gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in ort.get_available_providers()]
if not gpu:
    print(f"onnxruntime {ort.__version__} offers {', '.join(ort.get_available_providers())}: "
          "onnxruntime-gpu is needed for the CUDA/TensorRT providers")
    sys.exit(3)
print(" ".join(gpu))
PY
}
if [ "${1:-}" = "--ort-providers" ]; then
    ort_gpu_providers
    exit $?
fi

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
step bench-cfinet 300 "$PYTHON" tools/benchmark_models.py \
    --config-a configs/cfinet/cfinet_plain_R50_fpn_visdrone_1x.py --config-b configs/cfinet/cfinet_R50_fpn_visdrone_1x.py \
    --image-size 800 800 --iters "$ITERS" --warmup "$WARMUP" --output "$OUT/bench-cfinet.md" \
    --opts-a train.device=cuda --opts-b train.device=cuda
step bench-srtod 300 "$PYTHON" tools/benchmark_models.py --config-a "$SRTOD" --config-b "$SRTOD" \
    --image-size 800 800 --iters "$ITERS" --warmup "$WARMUP" --output "$OUT/bench-srtod.md" \
    --opts-a train.device=cuda model.feature_hook=null --opts-b train.device=cuda
step bench-srtod-light 300 "$PYTHON" tools/benchmark_models.py --config-a "$SRTOD" \
    --config-b configs/srtod/faster_rcnn_srtod_light_R50_fpn_visdrone_1x.py \
    --image-size 800 800 --iters "$ITERS" --warmup "$WARMUP" --output "$OUT/bench-srtod-light.md" \
    --opts-a train.device=cuda model.feature_hook=null --opts-b train.device=cuda
# SR-TOD's sampled inference against the full reconstruction on CUDA (same weights, the
# repository's real HIT-UAV images; threshold 0.3 so that random weights give a sparse map)
step consistency-srtod 300 env SOD2_DATASETS="$(pwd)/tests/fixtures/hituav-subset" "$PYTHON" tools/benchmark_consistency.py \
    --config configs/srtod/faster_rcnn_srtod_R18s_fpn_hituav_cpu.py --dataset hituav_val \
    --max-images 17 --output "$OUT/consistency-srtod.md" \
    --opts-a train.device=cuda model.feature_hook.threshold.init=0.3 \
    --opts-b train.device=cuda model.feature_hook.threshold.init=0.3 model.feature_hook.sampled_inference=False

# exported models under ONNX Runtime's CUDA / TensorRT providers against PyTorch on CUDA (same
# weights, images and comparison as the CPU parity tests: sod2/export/parity.py)
ORT_GPU="$(ort_gpu_providers)"; ORT_RC=$?
if [ "$ORT_RC" -eq 0 ]; then
    # shellcheck disable=SC2086  # one word per provider
    step onnx-gpu-parity 600 "$PYTHON" tools/check_export_parity.py \
        --config-file configs/yolox/yolox_s_coco.py --config-file configs/rtdetr/rtdetr_r18vd_coco.py \
        --config-file configs/baselines/faster_rcnn_R50_fpn_aitod_1x.py --image-size 640 640 --images 2 \
        --device cuda --providers $ORT_GPU --output "$OUT/onnx-gpu-parity.md"
else
    echo; echo "== onnx-gpu-parity: SKIP: $ORT_GPU"
    SUMMARY+=("$(printf '%-28s %-20s %5ds' onnx-gpu-parity "SKIP (no onnxruntime-gpu)" 0)")
fi

echo; echo "== GPU check summary ($(head -n1 "$OUT/device.txt"))"
printf '%s\n' "${SUMMARY[@]}"
echo "cuda tests: ${TESTS_LINE:-no pytest summary line}"
for f in "$OUT"/bench-*.md "$OUT"/consistency-*.md "$OUT"/onnx-gpu-parity.md; do [ -f "$f" ] && { echo "-- $f"; cat "$f"; }; done
echo "reports: $OUT"
exit "$FAILED"
