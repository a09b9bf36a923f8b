"""Peak memory and wall time of predicting one large many-class CT-like image: nnlight vs nnU-Net 2.8.1, side by side.

    python -m benchmarks.memory_vs_nnunet --nnunet-python /path/to/venv-with-nnunetv2==2.8.1/bin/python \
        [--work /tmp/nnlight-memory] [--slices 64] [--classes 105] [--nnlight-only-slices 400]

A synthetic CT-like dataset (a body ellipse cut into ``classes - 1`` organs, intensities per organ plus noise) at
1.5 mm is planned, preprocessed and trained by nnU-Net itself (3d_fullres, fold all, one iteration: the figure is
about memory, not accuracy; ``NNUNET_PYTHONPATH`` is put on nnU-Net's path, e.g. for a stand-in of its optional
timm import). One test image of 512 x 512 x ``slices`` voxels at 0.8 mm is then predicted by
``nnUNetv2_predict`` and by ``nnlight-predict`` with the same weights (nnlight imports nnU-Net's model folder),
mirroring off for both, each in its own process tree. Peak memory is sampled every 0.1 s as the proportional set
size (PSS) summed over the command's processes (nnU-Net forks workers; shared library pages are counted once), and
the two segmentations are compared voxel by voxel. ``--nnlight-only-slices`` then predicts a larger image with
nnlight alone (nnU-Net's export needs two float32 copies of classes x voxels: 105 classes x 400 slices of 512 x 512 is
88 GB, beyond this machine).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from benchmarks._common import provenance
from nnlight.utils.files import atomic_write_json

DATASET_ID, DATASET = 951, "Dataset951_ManyClassCT"
TRAINER = "nnUNetTrainer_1epoch"


def ct_like_case(shape: tuple[int, int, int], spacing: tuple[float, float, float], classes: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(image, labels) ``(z, y, x)``: a body ellipse whose voxels belong to the nearest of ``classes - 1`` organ
    seeds (placed in millimetres, so the organs keep their size at any spacing); air outside."""
    extent = np.array(shape) * np.array(spacing)
    seeds = np.stack([rng.uniform(0.1, 0.9, classes - 1) * extent[a] for a in range(3)], axis=1)
    grid = np.zeros(shape, bool)
    indices = np.round(seeds / np.array(spacing)).astype(int).clip(0, np.array(shape) - 1)
    grid[tuple(indices.T)] = True
    # nearest seed per voxel, in physical distance
    nearest = ndimage.distance_transform_edt(~grid, sampling=spacing, return_distances=False, return_indices=True)
    seed_label = np.zeros(shape, np.int16)
    seed_label[tuple(indices.T)] = np.arange(1, classes, dtype=np.int16)
    labels = seed_label[tuple(nearest)]
    yy, xx = np.arange(shape[1])[:, None], np.arange(shape[2])[None, :]
    body = ((yy - shape[1] / 2) / (0.42 * shape[1])) ** 2 + ((xx - shape[2] / 2) / (0.47 * shape[2])) ** 2 < 1
    labels = np.where(body, labels, 0).astype(np.uint8)
    organ_hu = rng.uniform(-100, 300, classes).astype(np.float32)
    organ_hu[0] = -1000
    image = organ_hu[labels] + rng.normal(0, 20, shape).astype(np.float32)
    return image.astype(np.int16), labels


def write_nifti(array: np.ndarray, spacing: tuple[float, float, float], path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(reversed(spacing)))
    sitk.WriteImage(image, str(path))


def make_dataset(raw: Path, classes: int, slices: list[int]) -> Path:
    """Four 64 x 96 x 96 training cases at 1.5 mm, and one 512 x 512 test image at 0.8 mm per ``slices``."""
    folder = raw / DATASET
    rng = np.random.default_rng(0)
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(4):
        if not (folder / "labelsTr" / f"ct_{i:03d}.nii.gz").is_file():
            image, labels = ct_like_case((64, 96, 96), (1.5, 1.5, 1.5), classes, rng)
            write_nifti(image, (1.5, 1.5, 1.5), folder / "imagesTr" / f"ct_{i:03d}_0000.nii.gz")
            write_nifti(labels, (1.5, 1.5, 1.5), folder / "labelsTr" / f"ct_{i:03d}.nii.gz")
    for n in slices:
        images = raw / f"test_{n}"
        images.mkdir(exist_ok=True)
        if not (images / f"big_{n}_0000.nii.gz").is_file():
            image, _ = ct_like_case((n, 512, 512), (0.8, 0.8, 0.8), classes, rng)
            write_nifti(image, (0.8, 0.8, 0.8), images / f"big_{n}_0000.nii.gz")
    atomic_write_json(folder / "dataset.json", {
        "channel_names": {"0": "CT"}, "file_ending": ".nii.gz", "numTraining": 4,
        "labels": {"background": 0, **{f"organ_{c:03d}": c for c in range(1, classes)}}})
    return folder


def _tree(root: int) -> list[int]:
    """``root`` and every process descended from it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _pss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def measured(command: list[str], env: Mapping[str, str], log: Path) -> tuple[float, float]:
    """Wall seconds and peak PSS (MB) of the command's process tree."""
    peak = 0.0
    start = time.perf_counter()
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _pss_mb(_tree(process.pid)))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample)
        sampler.start()
        code = process.wait()
        done.set()
        sampler.join()
    if code != 0:
        raise SystemExit(f"{command[0]} failed (exit {code}); see {log}")
    return time.perf_counter() - start, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nnunet-python", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("/tmp/nnlight-memory"))
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--classes", type=int, default=105)
    parser.add_argument("--nnlight-only-slices", type=int, default=0)
    args = parser.parse_args()
    work = args.work.resolve()
    nnunet_env = {**os.environ, "PYTHONPATH": os.environ.get("NNUNET_PYTHONPATH", ""), "nnUNet_raw": str(work / "raw"),
                  "nnUNet_preprocessed": str(work / "nnunet_pre"),
                  "nnUNet_results": str(work / "nnunet_results")}
    slices = [args.slices, *([args.nnlight_only_slices] if args.nnlight_only_slices else [])]
    make_dataset(work / "raw", args.classes, slices)
    nnunet_bin = args.nnunet_python.parent
    model = work / "nnunet_results" / DATASET / f"{TRAINER}__nnUNetPlans__3d_fullres"
    if not (model / "fold_all" / "checkpoint_final.pth").is_file():
        subprocess.run([str(nnunet_bin / "nnUNetv2_plan_and_preprocess"), "-d", str(DATASET_ID), "-c", "3d_fullres",
                        "-np", "2"], env=nnunet_env, check=True, stdout=subprocess.DEVNULL)
        subprocess.run([str(args.nnunet_python), "-c", (
            "import torch\nfrom nnunetv2.run.run_training import get_trainer_from_args\n"
            f"t = get_trainer_from_args('{DATASET_ID}', '3d_fullres', 'all', '{TRAINER}', 'nnUNetPlans', "
            "device=torch.device('cpu'))\nt.num_iterations_per_epoch, t.num_val_iterations_per_epoch = 1, 1\n"
            "t.run_training()\n")], env=nnunet_env, check=True, stdout=subprocess.DEVNULL)
    print(provenance("benchmarks.memory_vs_nnunet"))
    print(f"{args.classes} classes, 3d_fullres at 1.5 mm, test images 512 x 512 x N at 0.8 mm, mirroring off, "
          f"same weights (nnU-Net's fold all)\n")
    print("| image | tool | wall time (s) | peak memory, PSS (MB) | segmentation vs nnU-Net's |")
    print("|---|---|---|---|---|")
    for n in slices:
        images = work / "raw" / f"test_{n}"
        results = {}
        tools = {"nnlight": [sys.executable, "-m", "nnlight", "predict", f"model={model}", f"input={images}",
                             f"output={work / f'nnlight_{n}'}", "mirroring=false", "device=cpu", "overwrite=true"]}
        if n == args.slices:
            tools["nnU-Net 2.8.1"] = [str(nnunet_bin / "nnUNetv2_predict"), "-i", str(images), "-o",
                                      str(work / f"nnunet_{n}"), "-d", str(DATASET_ID), "-c", "3d_fullres", "-tr",
                                      TRAINER, "-f", "all", "-device", "cpu", "--disable_tta", "-npp", "1", "-nps",
                                      "1"]
        for tool, command in tools.items():
            results[tool] = measured(command, os.environ if tool == "nnlight" else nnunet_env,
                                     work / f"{tool.split()[0]}_{n}.log")
        nnunet_seg = work / f"nnunet_{n}" / f"big_{n}.nii.gz"
        ours = sitk.GetArrayFromImage(sitk.ReadImage(str(work / f"nnlight_{n}" / f"big_{n}.nii.gz")))
        theirs = sitk.GetArrayFromImage(sitk.ReadImage(str(nnunet_seg))) if nnunet_seg.is_file() else None
        for tool, (seconds, peak) in results.items():
            agreement = ("-" if theirs is None or tool != "nnlight" else
                         f"{(ours == theirs).mean():.4%} of {ours.size:,} voxels equal")
            print(f"| 512 x 512 x {n} | {tool} | {seconds:.1f} | {peak:,.0f} | {agreement} |")
        if len(results) == 2:
            (s_ours, m_ours), (s_theirs, m_theirs) = results["nnlight"], results["nnU-Net 2.8.1"]
            print(f"| | nnlight / nnU-Net | {s_ours / s_theirs:.2f}x | {m_ours / m_theirs:.2f}x | |")


if __name__ == "__main__":
    main()
