from __future__ import annotations

import math

import numpy as np
import pytest

from nnlight.evaluation.metrics import case_metrics, label_metrics, summarize

LABELS = {"background": 0, "liver": 1, "tumor": 2}


def test_dice_and_iou_by_hand() -> None:
    reference = np.array([0, 1, 1, 1, 2, 0])
    prediction = np.array([1, 1, 1, 0, 0, 0])
    m = label_metrics(reference, prediction, 1)
    assert (m["TP"], m["FP"], m["FN"]) == (2, 1, 1)
    assert m["Dice"] == pytest.approx(4 / 6) and m["IoU"] == pytest.approx(2 / 4)
    tumor = label_metrics(reference, prediction, 2)
    assert tumor["Dice"] == 0.0 and tumor["n_ref"] == 1 and tumor["n_pred"] == 0


def test_absent_label_is_nan_and_ignored_in_means() -> None:
    case_a = case_metrics(np.array([0, 1, 1]), np.array([0, 1, 0]), LABELS)
    case_b = case_metrics(np.array([0, 1, 0]), np.array([0, 1, 0]), LABELS)
    assert math.isnan(case_a["2"]["Dice"]) and math.isnan(case_b["2"]["IoU"])
    summary = summarize({"a": case_a, "b": case_b})
    assert summary["mean"]["1"]["Dice"] == pytest.approx((2 / 3 + 1) / 2)
    assert math.isnan(summary["mean"]["2"]["Dice"])
    assert summary["foreground_mean"]["Dice"] == pytest.approx((2 / 3 + 1) / 2)  # NaN label left out


def test_ignore_label_and_regions() -> None:
    reference = np.array([1, 1, 3, 2])
    prediction = np.array([1, 0, 1, 2])
    m = case_metrics(reference, prediction, {"background": 0, "a": 1, "b": 2, "ignore": 3}, ignore_label=3)
    assert (m["1"]["TP"], m["1"]["FP"], m["1"]["FN"]) == (1, 0, 1)  # the voxel under 'ignore' does not count
    region = label_metrics(reference, prediction, (1, 2))
    assert (region["TP"], region["FP"], region["FN"]) == (2, 1, 1)
