"""Throughput of predicting a folder of many small 2D RGB images (DRIVE-like, 256 x 256): nnlight-predict, and
nnU-Net 2.8.1's nnUNetv2_predict on the same folders when its environment is given; prints images/s.

    python -m benchmarks.small_images [--work /tmp/nnlight-small] [--images 1000] [--mirrored-images 200]
        [--nnunet-python /path/to/venv-with-nnunetv2==2.8.1/bin/python]

A synthetic RGB dataset (dark curved strips on a bright disc) is planned and its 2d configuration trained for a few
iterations by each tool (the figure is about prediction, not accuracy; nnU-Net plans the same 256 x 256 patch). A
folder of ``--images`` test images is predicted without mirroring, one of ``--mirrored-images`` with it (nnU-Net's
default TTA), wall time measured around the whole command (start-up, reading, preprocessing, the network, export,
writing). nnU-Net runs with its defaults (-npp 3 -nps 3); nnlight with its defaults (precision 32 on the CPU) and
with ``precision=bf16-mixed``, whose segmentation is compared pixel by pixel with float32's. ``NNUNET_PYTHONPATH``
is put on nnU-Net's path (e.g. a stand-in for its optional timm import). ``--device cuda`` (a lent GPU) predicts
there with nnlight's defaults (training precision, tile batch from free memory, 3 reader/export threads) and adds
how busy ``nvidia-smi`` saw the GPU between its first and last busy sample.
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


def make_dataset(raw: Path, cases: int, size: int) -> Path:
    folder = raw / DATASET
    rng = np.random.default_rng(0)
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(cases):
        rgb, label = _case(size, rng)
        sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(folder / "imagesTr" / f"img_{i:04d}_0000.png"))
        sitk.WriteImage(sitk.GetImageFromArray(label), str(folder / "labelsTr" / f"img_{i:04d}.png"))
    atomic_write_json(folder / "dataset.json", {"channel_names": {"0": "R", "1": "G", "2": "B"},
                                                "labels": {"background": 0, "vessel": 1}, "numTraining": cases,
                                                "file_ending": ".png"})
    return folder


def test_images(folder: Path, count: int, size: int) -> Path:
    """``count`` test images (made once)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    for i in range(len(list(folder.glob("*.png"))), count):
        sitk.WriteImage(sitk.GetImageFromArray(_case(size, rng)[0], isVector=True), str(folder / f"t_{i:04d}_0000.png"))
    return folder


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def timed_with_gpu_busy(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds, and the mean GPU utilization (%) sampled every 0.1 s from the first to the last busy sample
    (the start-up before the first image is left out)."""
    sampler = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                "-lms", "100"], stdout=subprocess.PIPE, text=True)
    try:
        seconds = timed(command, env)
    finally:
        sampler.terminate()
    samples = [float(line) for line in sampler.communicate()[0].split() if line.strip().isdigit()]
    busy = [i for i, value in enumerate(samples) if value > 0]
    return seconds, float(np.mean(samples[busy[0]:busy[-1] + 1])) if busy else 0.0


def agreement(first: Path, second: Path) -> float:
    same = total = 0
    for f in first.glob("*.png"):
        a, b = (sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f.name))) for folder in (first, second))
        same, total = same + int((a == b).sum()), total + a.size
    return same / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/nnlight-small"))
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--mirrored-images", type=int, default=200)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--nnunet-python", type=Path)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()
    work = args.work.resolve()
    env = {**os.environ, "NNLIGHT_RAW": str(work / "raw"), "NNLIGHT_PREPROCESSED": str(work / "pre"),
           "NNLIGHT_RESULTS": str(work / "results")}
    nnunet_env = {**os.environ, "PYTHONPATH": os.environ.get("NNUNET_PYTHONPATH", ""), "nnUNet_raw": str(work / "raw"),
                  "nnUNet_preprocessed": str(work / "nnunet_pre"), "nnUNet_results": str(work / "nnunet_results")}
    make_dataset(work / "raw", 10, args.size)
    nnlight = [sys.executable, "-m", "nnlight"]
    if not list((work / "results" / DATASET / "2d").glob("*/fold_all")):
        timed([*nnlight, "plan", f"dataset={DATASET}"], env)
        timed([*nnlight, "train", f"plan={DATASET}/2d", "data.fold=all", "trainer.max_epochs=1",
               "data.iterations_per_epoch=3", "data.val_iterations_per_epoch=1", "validation.enabled=false"], env)
    model = next((work / "results" / DATASET / "2d").glob("*/fold_all"))
    if args.nnunet_python:
        nnunet_bin = args.nnunet_python.parent
        if not (work / "nnunet_results" / DATASET / "nnUNetTrainer_1epoch__nnUNetPlans__2d" / "fold_all").is_dir():
            timed([str(nnunet_bin / "nnUNetv2_plan_and_preprocess"), "-d", DATASET.split("_")[0][7:], "-c", "2d",
                   "-np", "2"], nnunet_env)
            timed([str(args.nnunet_python), "-c", (
                "import torch\nfrom nnunetv2.run.run_training import get_trainer_from_args\n"
                f"t = get_trainer_from_args('{DATASET}', '2d', 'all', 'nnUNetTrainer_1epoch', 'nnUNetPlans', "
                "device=torch.device('cpu'))\nt.num_iterations_per_epoch, t.num_val_iterations_per_epoch = 3, 1\n"
                "t.run_training()\n")], nnunet_env)
    print(provenance("benchmarks.small_images"))
    print(f"RGB images of {args.size} x {args.size} px, 2d configuration (one tile per image), each tool's own model\n")
    on_gpu = args.device == "cuda"
    print(f"| images | mirroring | command | wall time (s) | images/s | vs nnU-Net |{' GPU busy |' if on_gpu else ''}")
    print(f"|---|---|---|---|---|---|{'---|' if on_gpu else ''}")
    for count, mirroring in ((args.images, False), (args.mirrored_images, True)):
        images = test_images(work / f"test_{count}", count, args.size)
        runs: dict[str, list[str]] = {}
        if args.nnunet_python:
            runs["nnUNetv2_predict"] = [str(args.nnunet_python.parent / "nnUNetv2_predict"), "-i", str(images), "-o",
                                        str(work / f"nnunet_{count}"), "-d", DATASET, "-c", "2d", "-tr",
                                        "nnUNetTrainer_1epoch", "-f", "all", "-device", args.device,
                                        *([] if mirroring else ["--disable_tta"])]
        for precision in ("32", "bf16-mixed") if not on_gpu else ("auto",):
            runs[f"nnlight-predict precision={precision}"] = [
                *nnlight, "predict", f"model='{model}'", f"input={images}", f"output={work / f'{precision}_{count}'}",
                f"mirroring={str(mirroring).lower()}", f"precision={precision}", f"device={args.device}",
                "overwrite=true"]
        baseline = None
        for name, command in runs.items():
            nnunet = name == "nnUNetv2_predict"
            if on_gpu and not nnunet:
                seconds, busy = timed_with_gpu_busy(command, env)
            else:
                seconds, busy = timed(command, nnunet_env if nnunet else env), None
            baseline = baseline or (seconds if nnunet else None)
            ratio = f"{baseline / seconds:.2f}x" if baseline else "-"
            print(f"| {count} | {'on' if mirroring else 'off'} | {name} | {seconds:.1f} | {count / seconds:.2f} | "
                  f"{ratio} |{'' if not on_gpu else f' {busy:.0f} % |' if busy is not None else ' - |'}", flush=True)
        if not on_gpu:
            print(f"| | | bf16-mixed vs 32: {agreement(work / f'32_{count}', work / f'bf16-mixed_{count}'):.4%} of "
                  "the pixels equal | | | |")


if __name__ == "__main__":
    main()
