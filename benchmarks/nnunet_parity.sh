#!/usr/bin/env bash
# Parity of nnlight's nnU-Net model import with nnU-Net 2.8.1 itself.
#   NNUNET_PYTHON=/path/to/venv-with-nnunetv2==2.8.1/bin/python bash benchmarks/nnunet_parity.sh [WORK]
# nnU-Net (its own environment) plans, preprocesses and trains a tiny model (3 iterations, nnUNetTrainer_1epoch)
# per dataset and predicts a few training images with it; nnlight's predict.py predicts the same images with
# those weights (model=<nnU-Net trained model folder>); the voxel agreement is printed per case.
# Datasets: ../shared/datasets/Dataset104_DRIVE (2d, mirroring TTA on) and Dataset101_BraTS2015Mini
# (3d_fullres, TTA off to keep the CPU time at minutes). Then benchmarks/nnunet_parity_explain.py repeats nnlight's
# prediction with nnU-Net's float16 sums to show where the differing voxels come from.
set -euo pipefail
NNUNET_PYTHON=${NNUNET_PYTHON:?set NNUNET_PYTHON to the python of an environment with nnunetv2==2.8.1}
NNLIGHT_PYTHON=${NNLIGHT_PYTHON:-.venv/bin/python}
WORK=$(realpath -m "${1:-/tmp/nnunet_parity}")
SHARED=$(realpath ../shared/datasets)
export nnUNet_raw=$WORK/raw nnUNet_preprocessed=$WORK/preprocessed nnUNet_results=$WORK/results
mkdir -p "$nnUNet_raw" "$WORK/images"
NNUNET_BIN=$(dirname "$NNUNET_PYTHON")
# dataset id, configuration, TTA flag for nnU-Net, mirroring for nnlight, images predicted
CASES=("104 2d 2d '' true drive_21 drive_22 drive_23 drive_24"
       "101 3d_fullres 3d_fullres --disable_tta false brats2013_pat0001 brats2013_pat0002")
for entry in "${CASES[@]}"; do
  eval "set -- $entry"
  id=$1 config=$2 tta=$4 mirroring=$5; shift 5
  name=$(basename "$SHARED"/Dataset${id}_*)
  ln -sfn "$SHARED/$name" "$nnUNet_raw/$name"
  model=$nnUNet_results/$name/nnUNetTrainer_1epoch__nnUNetPlans__$config
  if [ ! -f "$model/fold_0/checkpoint_final.pth" ]; then  # (one training at a time: nnU-Net re-plans in place)
    "$NNUNET_BIN/nnUNetv2_plan_and_preprocess" -d "$id" -c "$config" -np 2 --verify_dataset_integrity > "$WORK/plan_$id.log"
    "$NNUNET_PYTHON" - "$id" "$config" <<'PY'
import sys, torch
from nnunetv2.run.run_training import get_trainer_from_args
trainer = get_trainer_from_args(sys.argv[1], sys.argv[2], 0, "nnUNetTrainer_1epoch", "nnUNetPlans",
                                device=torch.device("cpu"))
trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch = 3, 1
trainer.run_training()
PY
  fi
  images=$WORK/images/$name; rm -rf "$images"; mkdir -p "$images"
  for c in "$@"; do cp "$SHARED/$name"/imagesTr/${c}_*.* "$images/"; done
  start=$(date +%s.%N)
  "$NNUNET_BIN/nnUNetv2_predict" -i "$images" -o "$WORK/nnunet_pred/$name" -d "$id" -c "$config" \
      -tr nnUNetTrainer_1epoch -f 0 -device cpu $tta -npp 1 -nps 1 --save_probabilities > "$WORK/predict_nnunet_$id.log"
  echo "nnU-Net predict $name: $(echo "$(date +%s.%N) - $start" | bc) s"
  rm -rf "$WORK/nnlight_pred/$name"; start=$(date +%s.%N)
  "$NNLIGHT_PYTHON" predict.py "model=$model" "input=$images" "output=$WORK/nnlight_pred/$name" \
      mirroring=$mirroring device=cpu save_probabilities=true > "$WORK/predict_nnlight_$id.log"
  echo "nnlight predict $name: $(echo "$(date +%s.%N) - $start" | bc) s"
  "$NNLIGHT_PYTHON" - "$WORK/nnunet_pred/$name" "$WORK/nnlight_pred/$name" <<'PY'
# Per case: voxel agreement of the segmentations; where they differ, how close the two top classes were in
# nnlight's float32 probabilities (nnU-Net sums its tiles in float16, nnlight in float32), and the largest
# probability difference anywhere.
import sys
from pathlib import Path
import numpy as np
from nnlight.raw.io import format_of, read_seg
ours = Path(sys.argv[2])
for theirs in sorted(p for p in Path(sys.argv[1]).iterdir() if p.name.endswith((".nii.gz", ".png"))):
    case = theirs.name.removesuffix(".nii.gz").removesuffix(".png")
    kind = format_of(theirs)
    a, b = read_seg(theirs, kind)[0], read_seg(ours / theirs.name, kind)[0]
    p_theirs = np.load(theirs.parent / f"{case}.npz")["probabilities"].astype(np.float32)
    p_ours = np.load(ours / f"{case}.npz")["probabilities"].astype(np.float32).reshape(p_theirs.shape)
    differ = (a != b).reshape(p_ours.shape[1:])
    top2 = np.sort(p_ours[:, differ], axis=0)[-2:] if differ.any() else np.zeros((2, 0))
    margin = float((top2[1] - top2[0]).max()) if differ.any() else 0.0
    print(f"  {case}: {a.size} voxels, agreement {100 * (a == b).mean():.4f} % ({int(differ.sum())} differ; "
          f"largest top-2 probability gap there {margin:.2e}); max |p_nnU-Net - p_nnlight| "
          f"{float(np.abs(p_theirs - p_ours).max()):.2e}")
PY
  "$NNLIGHT_PYTHON" benchmarks/nnunet_parity_explain.py "$model" "$images" "$WORK/nnunet_pred/$name" \
      $([ "$mirroring" = true ] && echo --mirroring)
done
