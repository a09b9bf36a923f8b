"""Seconds per case of prediction's three stages, through the same Predictor as predict.py, on CPU or GPU.

    python -m benchmarks.prediction_breakdown                      # BraTS-size: 155x240x240, 4 channels, 5 classes
    python -m benchmarks.prediction_breakdown --channels 2 --variants 1 1+tta
    python -m benchmarks.prediction_breakdown --dataset ../shared/datasets/Dataset101_BraTS2015Mini

A synthetic case of the given shape (or the first training case of a raw dataset) is planned in a work folder;
the plan's network, with random weights (weights do not change the speed), predicts it as 1 fold, 1 fold with
8-way mirroring (TTA), 5 folds with TTA, ... Stages: preprocess (crop, normalize, resample), sliding window on
the device (every fold, every mirror, Gaussian accumulation), export (back to the input grid, argmax). In a
folder of cases predict.py overlaps them (the next case is preprocessed and the previous exported while the
device works), so a folder's time per case approaches the largest stage rather than their sum.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from benchmarks._common import planned_dataset, provenance
from nnlight.inference.predictor import Predictor, TrainingChoices, resolve_device
from nnlight.model.network import inference_network, plan_unet
from nnlight.planning.facts import DatasetFacts
from nnlight.raw.dataset import group_channel_files
from nnlight.raw.dataset_json import load_dataset_json
from nnlight.raw.io import image_format, read_images

BRATS_LABELS = {"background": 0, "edema": 1, "necrosis": 2, "non-enhancing tumor": 3, "enhancing tumor": 4}


def _variant(name: str) -> tuple[int, bool]:
    folds, _, tta = name.partition("+")
    if not folds.isdigit() or tta not in ("", "tta"):
        raise SystemExit(f"--variants {name}: write <folds> or <folds>+tta, e.g. 1 1+tta 5+tta")
    return int(folds), tta == "tta"


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, help="a raw dataset folder (default: a synthetic case)")
    parser.add_argument("--shape", type=int, nargs="+", default=[155, 240, 240])
    parser.add_argument("--spacing", type=float, nargs="+", default=[1.0, 1.0, 1.0], help="BraTS: 1 mm isotropic")
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--classes", type=int, default=5, help="network outputs (synthetic: BraTS's 5 labels)")
    parser.add_argument("--configuration", default="3d_fullres")
    parser.add_argument("--variants", nargs="+", default=["1", "1+tta", "5+tta"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", help="auto | 32 | 16-mixed | bf16-mixed")
    parser.add_argument("--tile-batch", type=int, default=0, help="0 = chosen from the free memory")
    parser.add_argument("--work", type=Path)
    args = parser.parse_args(argv)
    variants = [(name, *_variant(name)) for name in args.variants]
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as scratch:
        work = (args.work or Path(scratch)).resolve()
        name = planned_dataset(work, args.dataset, args.shape, args.channels, 1, "Prediction", preprocess=False,
                               spacing=tuple(args.spacing))
        plan = OmegaConf.to_container(OmegaConf.load(
            work / "preprocessed" / "configs" / "plan" / name / f"{args.configuration}.yaml"), resolve=True)
        if args.dataset is None:
            plan["labels"] = dict(list(BRATS_LABELS.items())[: args.classes]) if args.classes <= 5 else \
                {"background": 0, **{f"label {i}": i for i in range(1, args.classes)}}
        raw = args.dataset or work / "raw" / name
        ending = load_dataset_json(raw / "dataset.json").file_ending
        files = next(iter(group_channel_files(raw / "imagesTr", ending, len(plan["channel_names"]))[0].values()))
        images, geometry = read_images(files, image_format(ending))
    facts = DatasetFacts.from_plan(plan)
    torch.manual_seed(0)
    most_folds = max(folds for _, folds, _ in variants)
    choices = TrainingChoices(list(plan["patch_size"]), tuple(range(len(plan["patch_size"]))), plan_unet())
    networks = [inference_network(choices.network, plan, plan["patch_size"], None, "plan")
                for _ in range(most_folds)]
    print(provenance(f"prediction {name} {args.configuration}: image {list(images.shape)}, tile "
                     f"{plan['patch_size']}, {facts.layout.num_outputs} classes, device {device}"))
    print("\n| variant | precision | tiles per pass | preprocess | sliding window | export | total |\n"
          "|---|---|---|---|---|---|---|")
    results = {}
    for label, folds, tta in variants:
        predictor = Predictor(networks[:folds], plan, choices, mirroring=tta, device=device, precision=args.precision,
                              tile_batch=args.tile_batch)
        if device.type == "cuda":  # cuDNN autotuning and allocator warm-up are not per-case costs
            predictor.scores(predictor.prepare(images, geometry))
        times = [time.perf_counter()]
        case = predictor.prepare(images, geometry)
        times.append(time.perf_counter())
        scores = predictor.scores(case)
        times.append(time.perf_counter())
        predictor.export(case, scores, with_probabilities=False)
        times.append(time.perf_counter())
        stages = {"preprocess": times[1] - times[0], "sliding window": times[2] - times[1],
                  "export": times[3] - times[2]}
        results[label] = {**stages, "total": times[3] - times[0]}
        print(f"| {label} | {predictor.inference.precision} | {predictor.inference.tile_batch} | "
              + " | ".join(f"{v:.2f} s" for v in results[label].values()) + " |")
    return results


if __name__ == "__main__":
    main()
