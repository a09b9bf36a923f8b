"""Wall time of predicting a cohort in one run against the same cohort in 2 shards through the local launcher.

    python -m benchmarks.sharded_prediction [--work /tmp/nnlight-shards] [--images 24] [--shards 2]

The synthetic 3D demo dataset (2 channels) is planned and its 3d_fullres configuration trained briefly (the figure is
about prediction, not accuracy); a cohort of ``--images`` generated test images of the demo's size is then predicted
by one ``nnlight-predict`` run and by ``nnlight-predict -m shard=0..N-1 shards=N launcher=submitit_local`` into
another folder (N local jobs at once), without mirroring; the two folders are compared file for file.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from benchmarks._common import provenance
from nnlight.raw.synthetic import make_synthetic_dataset

REPO = Path(__file__).resolve().parents[1]


def _run(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/nnlight-shards"))
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--shards", type=int, default=2)
    args = parser.parse_args()
    work = args.work.resolve()
    env = {**os.environ, **{f"NNLIGHT_{k.upper()}": str(work / k) for k in ("raw", "preprocessed", "results")}}
    python = sys.executable
    raw = work / "raw" / "Dataset900_Demo"
    if not raw.is_dir():
        make_synthetic_dataset(work / "raw", num_test_cases=args.images)
    cohort = raw / "imagesTs"
    model = work / "results" / "Dataset900_Demo" / "3d_fullres"
    if not model.is_dir():
        _run([python, "plan.py", f"dataset={raw}"], env)
        _run([python, "train.py", "plan=Dataset900_Demo/3d_fullres", "trainer.max_epochs=2",
              "data.iterations_per_epoch=5", "data.val_iterations_per_epoch=1", "validation.enabled=false"], env)
    run = next(model.glob("*/fold_0")).parent
    common = [f"model={run}", f"input={cohort}", "mirroring=false"]
    for folder in ("one", "shards"):
        shutil.rmtree(work / folder, ignore_errors=True)
    one = _run([python, "predict.py", *common, f"output={work / 'one'}"], env)
    shards = _run([python, "predict.py", "-m", *common, f"output={work / 'shards'}", "launcher=submitit_local",
                   f"shard={','.join(str(k) for k in range(args.shards))}", f"shards={args.shards}",
                   f"hydra.launcher.cpus_per_task={max(1, (os.cpu_count() or 1) // args.shards)}"], env)
    names = sorted(p.name for p in (work / "one").glob("*.nii.gz"))
    same = names == sorted(p.name for p in (work / "shards").glob("*.nii.gz")) and all(
        np.array_equal(*(sitk.GetArrayFromImage(sitk.ReadImage(str(work / f / n))) for f in ("one", "shards")))
        for n in names)
    print(provenance("benchmarks.sharded_prediction"))
    print(f"{len(names)} generated 2-channel images of the 3D demo, 3d_fullres, mirroring off\n")
    print("| run | wall (s) | files equal to the single run's |")
    print("|---|---|---|")
    print(f"| one nnlight-predict | {one:.1f} | |")
    print(f"| {args.shards} shards, submitit_local, at once | {shards:.1f} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
