"""The pseudo Dice metric: nnU-Net's counts, per class or region, with the ignore label left out."""

from __future__ import annotations

import math

import torch

from nnlight.raw.labels import LabelLayout
from nnlight.training.pseudo_dice import PseudoDice


def test_label_counts_by_hand_summed_over_updates() -> None:
    metric = PseudoDice(LabelLayout.from_mapping({"background": 0, "a": 1, "b": 2}))
    predicted = torch.tensor([0, 1, 1, 2, 0])  # arg-max of the logits below
    logits = torch.nn.functional.one_hot(predicted, 3).T[None].float()  # (1, 3, 5)
    target = torch.tensor([[[0, 1, 2, 2, 1]]])
    metric.update(logits, target)
    metric.update(logits, target)  # a second batch doubles every count
    # label 1: TP 1, FP 1 (voxel 2), FN 1 (voxel 4); label 2: TP 1, FN 1 (voxel 2)
    assert metric.tp.tolist() == [2, 2] and metric.fp.tolist() == [2, 0] and metric.fn.tolist() == [2, 2]
    assert metric.compute().tolist() == [0.5, 2 / 3]


def test_ignored_voxels_and_absent_classes() -> None:
    metric = PseudoDice(LabelLayout.from_mapping({"background": 0, "a": 1, "b": 2, "ignore": 3}))
    logits = torch.nn.functional.one_hot(torch.tensor([1, 1, 0]), 3).T[None].float()
    metric.update(logits, torch.tensor([[[1, 3, 0]]]))  # the wrong prediction under the ignore label is not counted
    dice = metric.compute()
    assert dice[0].item() == 1.0 and math.isnan(dice[1].item())  # label 2 absent from truth and prediction


def test_regions_use_sigmoid_outputs_and_the_ignore_channel() -> None:
    layout = LabelLayout.from_mapping({"background": 0, "whole": [1, 2], "core": [2], "ignore": 3}, [1, 2])
    metric = PseudoDice(layout)
    logits = torch.tensor([[[5.0, 5.0, -5.0], [5.0, -5.0, 5.0]]])  # 2 regions, 3 voxels
    target = torch.tensor([[[1, 0, 0], [1, 0, 0], [0, 0, 1]]])  # last channel: voxel 3 is ignored
    metric.update(logits, target)
    assert metric.tp.tolist() == [1, 1] and metric.fp.tolist() == [1, 0] and metric.fn.tolist() == [0, 0]


def test_a_single_foreground_class_still_gives_one_value_per_class() -> None:
    """nnU-Net datasets with one label (membranes, vessels): torchmetrics would return a bare scalar."""
    metric = PseudoDice(LabelLayout.from_mapping({"background": 0, "membrane": 1}))
    logits = torch.nn.functional.one_hot(torch.tensor([1, 1, 0, 0]), 2).T[None].float()
    metric.update(logits, torch.tensor([[[1, 0, 1, 0]]]))  # TP 1, FP 1, FN 1
    assert metric.per_class().tolist() == [0.5]
