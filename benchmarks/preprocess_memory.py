"""Peak memory, wall and CPU time of planning + preprocessing a large CT-like dataset: nnlight vs nnU-Net 2.8.1.

    python -m benchmarks.preprocess_memory [--cases 8] [--slices 200] [--work /tmp/nnlight-prep-memory] \
        [--nnunet-python /path/to/venv-with-nnunetv2==2.8.1/bin/python] [--nnlight-args memory_gb=8]

Generates ``cases`` CT-like images of ``slices`` x 512 x 512 voxels (a body ellipse with three organs; in-plane
spacing 0.7-0.9 mm, 0.8-3 mm between slices, drawn per case), then runs ``nnlight-plan`` and
``nnUNetv2_plan_and_preprocess`` with their default settings, one after the other, each on a cold output folder.
Peak memory is the proportional set size (PSS) summed over the command's process tree, sampled every 0.1 s; CPU
time is the user and system time of the command and every process it waited for.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
from pathlib import Path

import numpy as np

from benchmarks._common import provenance
from benchmarks.memory_vs_nnunet import measured, write_nifti
from nnlight.utils.files import atomic_write_json

DATASET_ID, DATASET = 952, "Dataset952_LargeCT"


def large_ct_case(shape: tuple[int, int, int], spacing: tuple[float, float, float], rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(int16 image in HU, uint8 labels) ``(z, y, x)``: air, a body ellipse of soft tissue, three ellipsoid
    organs placed in millimetres, noise."""
    z, y, x = (np.arange(n, dtype=np.float32) * s for n, s in zip(shape, spacing, strict=True))
    extent = np.array(shape) * np.array(spacing)
    zz, yy, xx = z[:, None, None], y[None, :, None], x[None, None, :]
    body = ((yy - extent[1] / 2) / (0.42 * extent[1])) ** 2 + ((xx - extent[2] / 2) / (0.47 * extent[2])) ** 2 < 1
    labels = np.zeros(shape, np.uint8)
    labels[np.broadcast_to(body, shape)] = 4  # body: labelled 0 later, but its HU differs from air
    for organ in (1, 2, 3):
        centre = rng.uniform(0.3, 0.7, 3) * extent
        radii = rng.uniform(20, 60, 3)
        inside = (((zz - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2
                  + ((xx - centre[2]) / radii[2]) ** 2) < 1
        labels[inside & body] = organ
    hu = np.array([-1000, 60, 150, 250, 20], np.float32)
    image = hu[labels] + rng.normal(0, 20, shape).astype(np.float32)
    labels[labels == 4] = 0
    return image.astype(np.int16), labels


def make_dataset(raw: Path, cases: int, slices: int) -> Path:
    folder = raw / DATASET
    rng = np.random.default_rng(0)
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(cases):
        spacing = (float(rng.uniform(0.8, 3.0)), *[float(rng.uniform(0.7, 0.9))] * 2)
        if not (folder / "labelsTr" / f"ct_{i:03d}.nii.gz").is_file():
            image, labels = large_ct_case((slices, 512, 512), spacing, rng)
            write_nifti(image, spacing, folder / "imagesTr" / f"ct_{i:03d}_0000.nii.gz")
            write_nifti(labels, spacing, folder / "labelsTr" / f"ct_{i:03d}.nii.gz")
    atomic_write_json(folder / "dataset.json", {
        "channel_names": {"0": "CT"}, "file_ending": ".nii.gz", "numTraining": cases,
        "labels": {"background": 0, "organ_1": 1, "organ_2": 2, "organ_3": 3}})
    return folder


def _cpu_seconds() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime, usage.ru_stime


def _disk_gb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--work", type=Path, default=Path("/tmp/nnlight-prep-memory"))
    parser.add_argument("--nnunet-python", type=Path, default=None)
    parser.add_argument("--nnlight-args", nargs="*", default=[], help="extra nnlight-plan overrides")
    args = parser.parse_args()
    work = args.work.resolve()
    raw = make_dataset(work / "raw", args.cases, args.slices)
    env = {**os.environ, "NNLIGHT_RAW": str(work / "raw"), "NNLIGHT_PREPROCESSED": str(work / "nnlight_pre"),
           "NNLIGHT_RESULTS": str(work / "nnlight_results"), "nnUNet_raw": str(work / "raw"),
           "nnUNet_preprocessed": str(work / "nnunet_pre"), "nnUNet_results": str(work / "nnunet_results")}
    tools = {"nnlight": ([sys.executable, "-m", "nnlight", "plan", f"dataset={raw}", *args.nnlight_args],
                         work / "nnlight_pre")}
    if args.nnunet_python:
        tools["nnU-Net 2.8.1"] = ([str(args.nnunet_python.parent / "nnUNetv2_plan_and_preprocess"), "-d",
                                   str(DATASET_ID)], work / "nnunet_pre")
    print(provenance("benchmarks.preprocess_memory"))
    print(f"{args.cases} CT-like cases of {args.slices} x 512 x 512 (0.7-0.9 mm in plane, 0.8-3 mm between "
          f"slices), default settings, cold output folders\n")
    print("| tool | wall (s) | CPU user (s) | CPU system (s) | system share | peak PSS (GB) | store on disk (GB) |")
    print("|---|---|---|---|---|---|---|")
    for tool, (command, output) in tools.items():
        shutil.rmtree(output, ignore_errors=True)
        user, system = _cpu_seconds()
        seconds, peak_mb = measured(command, env, work / f"{tool.split()[0]}.log")
        user_after, system_after = _cpu_seconds()
        user, system = user_after - user, system_after - system
        print(f"| {tool} {' '.join(args.nnlight_args) if tool == 'nnlight' else ''} | {seconds:.0f} | {user:.0f} | "
              f"{system:.0f} | {system / (user + system):.0%} | {peak_mb / 1024:.1f} | {_disk_gb(output):.1f} |",
              flush=True)


if __name__ == "__main__":
    main()
