"""ISBI 2012 EM: objects (the regions between membranes) from a semantic membrane model + connected components vs
from border-core training, at the same CPU budget; prints a Markdown table for BENCHMARKS.md.

    python -m benchmarks.isbi_instances [--raw ../shared/datasets/Dataset103_ISBI2012EM] [--work /tmp/nnlight-isbi]
        [--epochs 8] [--iterations 25] [--batch 2] [--patch 256 256]

Both train nnlight's 2d configuration on fold 0 with the same epochs, iterations, batch and patch. The reference
objects are the connected interior regions (face connectivity) of each validation slice's membrane label; the
semantic model's objects are the connected regions of its predicted interior; the border-core model predicts
instance maps itself. Scored with the adapted Rand error and VI (ISBI 2012's measures), SEG, F1 and PQ.
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

from benchmarks._common import provenance
from nnlight.evaluation.object_metrics import instance_metrics
from nnlight.raw.instances import instances_from_mask
from nnlight.raw.io import image_format, read_seg, write_seg
from nnlight.utils.files import atomic_write_json, load_json

SCORES = ("ARE", "VI", "SEG", "F1", "PQ", "n_ref_objects", "n_pred_objects")
INSTANCE_DATASET = "Dataset913_ISBI2012Instances"


def make_instance_dataset(semantic: Path, raw_root: Path) -> Path:
    """The ISBI stack with instance maps: the connected interior regions of each membrane label, numbered."""
    folder = raw_root / INSTANCE_DATASET
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    shutil.copytree(semantic / "imagesTr", folder / "imagesTr", dirs_exist_ok=True)
    for label_file in sorted((semantic / "labelsTr").glob("*.png")):
        membrane, geometry = read_seg(label_file, image_format(".png"))
        write_seg(instances_from_mask(membrane[0] == 0)[None], folder / "labelsTr" / label_file.name, geometry)
    meta = load_json(semantic / "dataset.json")
    atomic_write_json(folder / "dataset.json", {**meta, "name": "ISBI2012Instances",
                                                "labels": {"background": 0, "region": 1}, "instance_maps": True})
    return folder


def run(env: dict[str, str], *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nnlight", *args], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def train(dataset: Path, env: dict[str, str], budget: list[str]) -> tuple[Path, float]:
    run(env, "plan", f"dataset={dataset}", "num_workers=2")
    seconds = run(env, "train", f"plan={dataset.name}/2d", "data.fold=0", *budget)
    folds = sorted((Path(env["NNLIGHT_RESULTS"]) / dataset.name / "2d").glob("*/fold_0"))
    return folds[-1], seconds


def score(semantic_run: Path, instance_run: Path, semantic_raw: Path) -> dict[str, dict[str, float]]:
    per_method: dict[str, list[dict[str, float]]] = {"semantic + connected components": [], "border-core": []}
    for prediction in sorted((instance_run / "validation").glob("*.png")):
        membrane, _ = read_seg(semantic_raw / "labelsTr" / prediction.name, image_format(".png"))
        reference = instances_from_mask(membrane[0] == 0)
        predicted_membrane, _ = read_seg(semantic_run / "validation" / prediction.name, image_format(".png"))
        per_method["semantic + connected components"].append(
            instance_metrics(reference, instances_from_mask(predicted_membrane[0] == 0)))
        per_method["border-core"].append(instance_metrics(reference, read_seg(prediction, image_format(".png"))[0][0]))
    return {m: {s: float(np.nanmean([c[s] for c in cases])) for s in SCORES} for m, cases in per_method.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets"
                        / "Dataset103_ISBI2012EM")
    parser.add_argument("--work", type=Path, default=Path("/tmp/nnlight-isbi"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=25)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--patch", type=int, nargs=2, default=[256, 256])
    args = parser.parse_args()
    if not args.raw.is_dir():
        sys.exit(f"{args.raw}: the ISBI 2012 dataset in nnU-Net raw format is needed (../shared/datasets)")
    env = {**os.environ, "NNLIGHT_RAW": str(args.work / "raw"), "NNLIGHT_PREPROCESSED": str(args.work / "pre"),
           "NNLIGHT_RESULTS": str(args.work / "results")}
    budget = [f"trainer.max_epochs={args.epochs}", f"data.iterations_per_epoch={args.iterations}",
              "data.val_iterations_per_epoch=2", f"plan.batch_size={args.batch}",
              f"plan.patch_size=[{args.patch[0]},{args.patch[1]}]", "validation.overlays=false"]
    instances = make_instance_dataset(args.raw, args.work / "raw")
    semantic = args.work / "raw" / args.raw.name  # validation reads the labels under the raw root
    if not semantic.exists():
        semantic.symlink_to(args.raw.resolve(), target_is_directory=True)
    semantic_run, semantic_seconds = train(semantic, env, budget)
    instance_run, instance_seconds = train(instances, env, budget)
    results = score(semantic_run, instance_run, args.raw)
    seconds = {"semantic + connected components": semantic_seconds, "border-core": instance_seconds}
    print(provenance("benchmarks.isbi_instances"))
    print(f"ISBI 2012 EM, fold 0 validation slices, each: {' '.join(budget)}\n")
    print("| method | ARE ↓ | VI ↓ | SEG ↑ | F1 ↑ | PQ ↑ | objects (ref / pred) | training wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for method, r in results.items():
        print(f"| {method} | {r['ARE']:.4f} | {r['VI']:.3f} | {r['SEG']:.4f} | {r['F1']:.4f} | {r['PQ']:.4f} | "
              f"{r['n_ref_objects']:.0f} / {r['n_pred_objects']:.0f} | {seconds[method]:.0f} |")


if __name__ == "__main__":
    main()
