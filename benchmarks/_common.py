"""Shared set-up for the training benchmarks: a planned + preprocessed dataset -> data module and task."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import lightning as L
import torch

from nnlight.data.augmentation import AugmentationSettings
from nnlight.data.datamodule import DataSettings, SegmentationDataModule, deep_supervision_scales
from nnlight.planning import plans_from_nnunet
from nnlight.planning.plans import ConfigurationPlan
from nnlight.training.task import SegmentationTask
from nnlight.utils.files import load_json
from nnlight.utils.provenance import device_name


def setup(dataset_folder: Path, configuration: str, iterations: int, workers: int
          ) -> tuple[ConfigurationPlan, SegmentationDataModule, SegmentationTask]:
    plans = plans_from_nnunet(load_json(dataset_folder / "nnUNetPlans.json"))
    plan = plans.configurations[configuration]
    labels = load_json(dataset_folder / "dataset.json")["labels"]
    data = SegmentationDataModule(DataSettings(
        preprocessed_dataset=dataset_folder, data_identifier=plan.data_identifier, patch_size=plan.patch_size,
        batch_size=plan.batch_size, deep_supervision_scales=deep_supervision_scales(plan.architecture.strides),
        iterations_per_epoch=iterations, val_iterations_per_epoch=1, num_workers=workers), AugmentationSettings())
    task = SegmentationTask(plan.architecture.network, plan.architecture.network_kwargs(),
                            input_channels=len(plan.normalization_schemes), num_classes=len(labels),
                            batch_dice=plan.batch_dice)
    return plan, data, task


def provenance(label: str) -> str:
    return (f"{label} | {datetime.date.today()} | {device_name()} | {os.cpu_count()} CPUs | torch {torch.__version__} "
            f"({torch.get_num_threads()} threads) | lightning {L.__version__}")
