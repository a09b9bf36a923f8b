"""Shared set-up for the training benchmarks: a planned + preprocessed dataset -> data module and task."""

from __future__ import annotations

import datetime
import functools
import os
from pathlib import Path

import lightning as L
import torch

from nnlight.data.datamodule import SegmentationDataModule, plan_datamodule
from nnlight.model.network import checked_plan_unet
from nnlight.pipeline import plan as plan_stage
from nnlight.pipeline.cli import compose_config
from nnlight.planning import plans_from_nnunet
from nnlight.planning.plans import ConfigurationPlan
from nnlight.raw.synthetic import make_synthetic_dataset
from nnlight.training.losses import LossSettings
from nnlight.training.schedules import PolyLR
from nnlight.training.task import SegmentationTask
from nnlight.utils.files import load_json
from nnlight.utils.provenance import device_name

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def setup(dataset_folder: Path, configuration: str, iterations: int, workers: int
          ) -> tuple[ConfigurationPlan, SegmentationDataModule, SegmentationTask]:
    plans = plans_from_nnunet(load_json(dataset_folder / "nnUNetPlans.json"))
    plan = plans.configurations[configuration]
    data = plan_datamodule(dataset_folder, plan, iterations_per_epoch=iterations, num_workers=workers)
    network = checked_plan_unet(plan.architecture, len(plan.normalization_schemes), data.layout.num_outputs,
                                plan.patch_size)
    task = SegmentationTask(network, data.layout, LossSettings(batch_dice=plan.batch_dice),
                            functools.partial(torch.optim.SGD, lr=0.01, momentum=0.99, nesterov=True,
                                              weight_decay=3e-5),
                            functools.partial(PolyLR, max_epochs=1000))
    return plan, data, task


def planned_dataset(work: Path, raw_folder: Path | None, shape: list[int], channels: int, cases: int,
                    name: str, preprocess: bool = True, spacing: tuple[float, ...] | None = None) -> str:
    """Plan (+ preprocess) ``raw_folder`` (or a generated synthetic dataset) under ``work``; the dataset's name.

    Points the ``NNLIGHT_*`` roots at ``work`` for the rest of the process (train.py's config reads them)."""
    for root in ("raw", "preprocessed", "results"):
        os.environ[f"NNLIGHT_{root.upper()}"] = str(work / root)
    if raw_folder is None:
        raw_folder = work / "raw" / f"Dataset990_{name}"
        if not raw_folder.is_dir():
            make_synthetic_dataset(work / "raw", 990, name, num_cases=cases, shape=tuple(shape),
                                   num_channels=channels, num_test_cases=0,
                                   **({"spacing": spacing} if spacing else {}))
    plan_stage.run(plan_stage.parse(compose_config(CONFIGS, "plan", [f"dataset={raw_folder}", "num_workers=0",
                                                                      f"preprocess={str(preprocess).lower()}"])))
    return raw_folder.name


def provenance(label: str) -> str:
    return (f"{label} | {datetime.date.today()} | {device_name()} | {os.cpu_count()} CPUs | torch {torch.__version__} "
            f"({torch.get_num_threads()} threads) | lightning {L.__version__}")
