"""Validation patch pictures for the image loggers: labels and regions drawn right, logged every N epochs only."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from nnlight.raw.labels import LabelLayout
from nnlight.training.images import TAG, ValidationImages, label_map, patch_dice, patch_picture

LABELS = LabelLayout.from_mapping({"background": 0, "a": 1, "b": 2})
REGIONS = LabelLayout.from_mapping({"background": 0, "whole": [1, 2], "core": [2]}, regions_class_order=[1, 2])


def test_region_targets_are_painted_in_region_order() -> None:
    target = torch.zeros(2, 4, 4)
    target[0, :2], target[1, 0] = 1, 1  # whole: rows 0-1, core: row 0
    painted = label_map(target, REGIONS)
    assert painted[0].tolist() == [2] * 4 and painted[1].tolist() == [1] * 4 and painted[2:].sum() == 0


def test_patch_dice_over_the_labels_present() -> None:
    reference, prediction = np.zeros((4, 4), int), np.zeros((4, 4), int)
    reference[0], prediction[0, :2] = 1, 1  # label 1: 2 of 4 found -> 2*2/(4+2)
    assert np.isclose(patch_dice(reference, prediction, [1, 2]), 4 / 6)  # label 2 absent from both: left out
    assert np.isnan(patch_dice(reference, prediction, [2]))


def test_a_perfect_3d_prediction_scores_one_and_shows_three_columns() -> None:
    target = torch.zeros(1, 8, 16, 16, dtype=torch.int16)
    target[0, 2:6, 4:10, 4:10] = 1
    target[0, 3, 12:14, 12:14] = 2
    logits = torch.nn.functional.one_hot(target[0].long(), 3).permute(3, 0, 1, 2).float() * 10
    picture, dice = patch_picture(torch.rand(8, 16, 16), target, logits, LABELS)
    assert dice == 1.0 and picture.shape[1] > 3 * 16 and picture.shape[2] == 3


def _trainer(epoch: int, logger: TensorBoardLogger) -> SimpleNamespace:
    return SimpleNamespace(current_epoch=epoch, sanity_checking=False, is_global_zero=True, loggers=[logger])


def test_pictures_are_logged_every_n_epochs_from_the_first_batch(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path, name="", version="tb")
    callback = ValidationImages(every_n_epochs=2, layout=LABELS)
    target = torch.zeros(1, 1, 16, 16, dtype=torch.int16)
    target[0, 0, 4:8, 4:8] = 1
    batch = (torch.rand(1, 1, 16, 16), [target])
    logits = torch.randn(1, 3, 16, 16)
    for epoch in range(4):
        for batch_idx in (0, 1):
            callback.on_validation_batch_end(_trainer(epoch, logger), None, logits, batch, batch_idx)  # type: ignore[arg-type]
    logger.experiment.flush()
    accumulator = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    accumulator.Reload()
    assert [image.step for image in accumulator.Images(TAG)] == [1, 3]  # epochs 2 and 4, once each
