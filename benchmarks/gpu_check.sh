#!/usr/bin/env bash
# The GPU figures of BENCHMARKS.md in one call, for a machine lent with a GPU (any machine runs it, slowly):
# where training time goes on the 3d_fullres plan of a synthetic 2-channel 128x160x160 dataset at nnU-Net's 250
# training / 50 validation iterations per epoch, BraTS-size prediction (1 fold, TTA, 5 folds + TTA), a folder of
# small 2D images (images/s, GPU busy %), and the tests marked gpu. Logs go to $OUT (or /tmp/gpu_check). Smaller runs: ITERATIONS=3 VAL_ITERATIONS=2 EPOCHS=2
# VARIANTS="1" SHAPE="24 48 40" PREDICT_SHAPE="40 64 64" SMALL_IMAGES=20 SMALL_MIRRORED=10 TESTS=0 bash benchmarks/gpu_check.sh
# Packages missing on the machine travel as wheels in .whl/ (the device tool's README says how to download them):
# hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3 SimpleITK==2.5.7 (the rest is there).
set -uo pipefail
out=${OUT:-/tmp/gpu_check}
mkdir -p "$out"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null | tee "$out/gpu.txt"
# shellcheck disable=SC2086
$python -m benchmarks.training_breakdown --shape ${SHAPE:-128 160 160} --channels 2 --epochs "${EPOCHS:-3}" \
    --iterations "${ITERATIONS:-250}" --val-iterations "${VAL_ITERATIONS:-50}" --work /tmp/gpu_check_train \
    >"$out/training_breakdown.log" 2>&1
status=$?
sed -n '/^| per training iteration/,$p' "$out/training_breakdown.log" | sed -n '1,40p'
grep -B2 "^| per training iteration" "$out/training_breakdown.log" | head -1
# shellcheck disable=SC2086
$python -m benchmarks.prediction_breakdown --shape ${PREDICT_SHAPE:-155 240 240} --variants ${VARIANTS:-1 1+tta 5+tta} \
    --work /tmp/gpu_check_predict >"$out/prediction_breakdown.log" 2>&1
status=$((status | $?))
sed -n '/^prediction/,$p' "$out/prediction_breakdown.log" | grep "^prediction\|^|"
# many small 2D images (issue 24): images/s and how busy the GPU is while nnlight-predict runs
$python -m benchmarks.small_images --device cuda --images "${SMALL_IMAGES:-1000}" --mirrored-images "${SMALL_MIRRORED:-200}" \
    --work /tmp/gpu_check_small >"$out/small_images.log" 2>&1
status=$((status | $?))
grep "^|" "$out/small_images.log"
if [ "${TESTS:-1}" = 1 ]; then
    $python -m pytest -q -m gpu tests 2>&1 | tail -5 | tee "$out/gpu_tests.log"
    status=$((status | PIPESTATUS[0]))
fi
exit "$status"
