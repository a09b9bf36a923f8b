"""Throughput of nnlight-predict on a folder of many small 2D RGB images (DRIVE-like, 256 x 256); prints images/s.

    python -m benchmarks.small_images [--work /tmp/nnlight-small] [--images 200] [--size 256]

A synthetic RGB dataset (bright vessels-like blobs on a dark disc) is planned and its 2d configuration trained
for a few iterations (the figure is about prediction, not accuracy); then the folder of test images is predicted
with and without mirroring, wall time measured around the whole command (reading, preprocessing, the network,
export and writing). The images/s figure is what issue 24 compares with nnU-Net's ``nnUNetv2_predict`` on the same
folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from benchmarks._common import provenance
from nnlight.utils.files import atomic_write_json

DATASET = "Dataset950_SmallRGB"


def _case(size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:size, :size] / size
    disc = (yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.2
    label = np.zeros((size, size), np.uint8)
    for _ in range(6):  # curved strips, as vessels
        a, b, c = rng.uniform(-1, 1, 3)
        label[disc & (np.abs(yy - 0.5 - a * (xx - 0.5) ** 2 - b * (xx - 0.5) - c * 0.2) < 0.01)] = 1
    rgb = np.zeros((size, size, 3), np.float32)
    rgb[disc] = [120, 60, 30]
    rgb[label == 1] = [60, 30, 15]
    rgb += rng.normal(0, 10, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8), label


def make_dataset(raw: Path, cases: int, test_images: int, size: int) -> Path:
    folder = raw / DATASET
    rng = np.random.default_rng(0)
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(cases + test_images):
        rgb, label = _case(size, rng)
        train = i < cases
        sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True),
                        str(folder / ("imagesTr" if train else "imagesTs") / f"img_{i:04d}_0000.png"))
        if train:
            sitk.WriteImage(sitk.GetImageFromArray(label), str(folder / "labelsTr" / f"img_{i:04d}.png"))
    atomic_write_json(folder / "dataset.json", {"channel_names": {"0": "R", "1": "G", "2": "B"},
                                                "labels": {"background": 0, "vessel": 1}, "numTraining": cases,
                                                "file_ending": ".png"})
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/nnlight-small"))
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    env = {**os.environ, "NNLIGHT_RAW": str(args.work / "raw"), "NNLIGHT_PREPROCESSED": str(args.work / "pre"),
           "NNLIGHT_RESULTS": str(args.work / "results")}
    folder = make_dataset(args.work / "raw", 10, args.images, args.size)

    def nnlight(*command: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "nnlight", *command], env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        return time.perf_counter() - start

    nnlight("plan", f"dataset={DATASET}")
    nnlight("train", f"plan={DATASET}/2d", "data.fold=all", "trainer.max_epochs=1", "data.iterations_per_epoch=3",
            "data.val_iterations_per_epoch=1", "validation.enabled=false")
    model = next((args.work / "results" / DATASET / "2d").glob("*/fold_all"))
    print(provenance("benchmarks.small_images"))
    print(f"{args.images} RGB images of {args.size} x {args.size} px, 2d model {model.parent.name}\n")
    print("| nnlight-predict | wall time (s) | images/s |")
    print("|---|---|---|")
    for mirroring in ("false", "true"):
        output = args.work / f"out_mirroring_{mirroring}"
        seconds = nnlight("predict", f"model='{model}'", f"input={folder / 'imagesTs'}", f"output={output}",
                          f"mirroring={mirroring}", "overwrite=true")
        print(f"| mirroring={mirroring} | {seconds:.1f} | {args.images / seconds:.2f} |")


if __name__ == "__main__":
    main()
