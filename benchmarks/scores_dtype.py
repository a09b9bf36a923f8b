"""How often a voxel's label changes when the sliding window holds the scores in float16 or bfloat16 instead of
float32 (``scores_dtype``), on a trained model and real images; prints a Markdown table for BENCHMARKS.md.

    python -m benchmarks.scores_dtype <model folder> <folder of images> [--cases 6]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks._common import provenance
from nnlight.inference.folder import input_cases
from nnlight.inference.predictor import SCORES_DTYPES, Predictor
from nnlight.raw.io import image_format, read_images
from nnlight.utils.files import load_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("images", type=Path)
    parser.add_argument("--cases", type=int, default=6)
    args = parser.parse_args()
    run = next(iter(sorted(args.model.glob("fold_*")))) if not (args.model / "plan.json").is_file() else args.model
    ending = load_json(run / "dataset.json")["file_ending"]
    predictors = {dtype: Predictor.from_model_folder(args.model, device="cpu", scores_dtype=dtype)
                  for dtype in SCORES_DTYPES}
    cases = list(input_cases(args.images, ending, predictors["float32"].num_channels)[0].items())[: args.cases]
    changed = {dtype: 0 for dtype in SCORES_DTYPES}
    seconds = dict.fromkeys(SCORES_DTYPES, 0.0)
    voxels = 0
    for _, files in cases:
        images, geometry = read_images(files, image_format(ending))
        segmentations = {}
        for dtype, predictor in predictors.items():
            start = time.perf_counter()
            segmentations[dtype] = predictor.predict(images, geometry).segmentation
            seconds[dtype] += time.perf_counter() - start
        voxels += segmentations["float32"].size
        for dtype in SCORES_DTYPES:
            changed[dtype] += int(np.count_nonzero(segmentations[dtype] != segmentations["float32"]))
    print(provenance("benchmarks.scores_dtype"))
    print(f"{args.model} on {len(cases)} image(s) of {args.images} ({voxels} voxels)\n")
    print("| scores_dtype | voxels with another label than float32 | agreement | time (s) |")
    print("|---|---|---|---|")
    for dtype in SCORES_DTYPES:
        print(f"| {dtype} | {changed[dtype]} | {100 * (1 - changed[dtype] / voxels):.4f} % | {seconds[dtype]:.1f} |")


if __name__ == "__main__":
    main()
