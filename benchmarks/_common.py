"""Shared set-up for the training benchmarks: a planned + preprocessed dataset -> data module and task."""

from __future__ import annotations

import datetime
import functools
import os
from pathlib import Path

import lightning as L
import torch

from nnlight.data.datamodule import SegmentationDataModule, plan_datamodule
from nnlight.nets import NetworkOptions
from nnlight.planning import plans_from_nnunet
from nnlight.planning.plans import ConfigurationPlan
from nnlight.training.losses import LossSettings
from nnlight.training.schedules import PolyLR
from nnlight.training.task import SegmentationTask
from nnlight.utils.files import load_json
from nnlight.utils.provenance import device_name


def setup(dataset_folder: Path, configuration: str, iterations: int, workers: int
          ) -> tuple[ConfigurationPlan, SegmentationDataModule, SegmentationTask]:
    plans = plans_from_nnunet(load_json(dataset_folder / "nnUNetPlans.json"))
    plan = plans.configurations[configuration]
    data = plan_datamodule(dataset_folder, plan, iterations_per_epoch=iterations, num_workers=workers)
    task = SegmentationTask(plan.architecture, len(plan.normalization_schemes), data.layout, NetworkOptions(),
                            LossSettings(batch_dice=plan.batch_dice),
                            functools.partial(torch.optim.SGD, lr=0.01, momentum=0.99, nesterov=True,
                                              weight_decay=3e-5),
                            functools.partial(PolyLR, max_epochs=1000))
    return plan, data, task


def provenance(label: str) -> str:
    return (f"{label} | {datetime.date.today()} | {device_name()} | {os.cpu_count()} CPUs | torch {torch.__version__} "
            f"({torch.get_num_threads()} threads) | lightning {L.__version__}")
