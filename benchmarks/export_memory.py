"""Peak memory and time of exporting a many-class prediction back to the input grid, all classes at once (as
before, and as nnU-Net does) vs a few at a time; prints a Markdown table for BENCHMARKS.md.

    python -m benchmarks.export_memory [--shape 200 256 256] [--classes 105] [--spacing 0.8] [--target 1.5]

The scores are random (a model's logits at the plan's spacing, as the sliding window leaves them); each mode runs
in its own process so its peak RSS is its own. Every mode's segmentation is compared voxel by voxel with the
all-at-once float32 one.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import provenance
from nnlight.inference.export import segmentation_in_original_space

MODES = {"all classes at once, float32 scores": (0, "float32"), "4 classes at a time, float32 scores": (4, "float32"),
         "4 classes at a time, float16 scores": (4, "float16")}


def export_once(shape: list[int], classes: int, spacing: float, target: float, chunk: int, dtype: str,
                out: str) -> dict:
    target_shape = [round(s * spacing / target) for s in shape]
    generator = torch.Generator().manual_seed(0)
    scores = torch.empty((classes, *target_shape), dtype=getattr(torch, dtype))
    for c in range(classes):  # filled class by class: no float32 copy of every class for float16 scores
        scores[c] = torch.randn(target_shape, generator=generator)
    properties = {"shape_before_cropping": shape, "bbox_used_for_cropping": [[0, s] for s in shape],
                  "shape_after_cropping_and_before_resampling": shape, "spacing": [spacing] * 3,
                  "target_spacing": [target] * 3}
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    segmentation = segmentation_in_original_space(scores, properties, [0, 1, 2], chunk=chunk or classes)
    seconds = time.perf_counter() - start
    np.save(out, segmentation)
    return {"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "scores_mb": scores.element_size() * scores.numel() / 2**20, "before_mb": baseline / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[200, 256, 256])
    parser.add_argument("--classes", type=int, default=105)
    parser.add_argument("--spacing", type=float, default=0.8)
    parser.add_argument("--target", type=float, default=1.5)
    parser.add_argument("--child", nargs=2)
    args = parser.parse_args()
    if args.child:
        chunk, dtype = MODES[args.child[0]]
        print(json.dumps(export_once(args.shape, args.classes, args.spacing, args.target, chunk, dtype,
                                     args.child[1])))
        return
    print(provenance("benchmarks.export_memory"))
    print(f"input {'x'.join(map(str, args.shape))} at {args.spacing} mm, scores at {args.target} mm, "
          f"{args.classes} classes\n")
    print("| export | peak RSS (MB) | of which scores (MB) | time (s) | voxels as all-at-once float32 |")
    print("|---|---|---|---|---|")
    reference = None
    with tempfile.TemporaryDirectory() as scratch:
        for i, mode in enumerate(MODES):
            path = str(Path(scratch) / f"{i}.npy")
            out = subprocess.run([sys.executable, "-m", "benchmarks.export_memory", "--shape",
                                  *map(str, args.shape), "--classes", str(args.classes), "--spacing",
                                  str(args.spacing), "--target", str(args.target), "--child", mode, path],
                                 capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            segmentation = np.load(path)
            reference = segmentation if reference is None else reference
            print(f"| {mode} | {result['peak_mb']:.0f} | {result['scores_mb']:.0f} | {result['seconds']:.1f} | "
                  f"{100 * float(np.mean(segmentation == reference)):.4f} % |")


if __name__ == "__main__":
    main()
