from __future__ import annotations

import math

import numpy as np
import pytest

from nnlight.evaluation.metrics import case_metrics, label_metrics, summarize, surface_metrics

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


def test_surface_metrics_of_a_shifted_box_by_hand() -> None:
    reference = np.zeros((1, 10, 12), bool)
    reference[0, 2:6, 2:6] = True
    prediction = np.roll(reference, 3, axis=2)  # the same box, 3 voxels to the right
    spacing = (1.0, 1.0, 0.5)  # 3 voxels along x = 1.5 mm
    result = surface_metrics(reference[0], prediction[0], spacing[1:], tolerance_mm=1.0)
    # distances from one outline to the other: 0 where the outlines overlap, up to 1.5 mm elsewhere
    assert result["HD95"] == pytest.approx(1.5)
    # outline of a 4x4 box = 12 voxels; points within 1 mm: the shared rows (x overlap) and the near columns
    outline_ref = {(y, x) for y in range(2, 6) for x in range(2, 6) if y in (2, 5) or x in (2, 5)}
    outline_pred = {(y, x + 3) for y, x in outline_ref}

    def within(points: set, others: set) -> int:
        return sum(min(np.hypot(y - v, (x - u) * 0.5) for v, u in others) <= 1.0 for y, x in points)

    expected = (within(outline_ref, outline_pred) + within(outline_pred, outline_ref)) / 24
    assert result["NSD"] == pytest.approx(expected)
    assert surface_metrics(reference[0], reference[0], spacing[1:]) == {"HD95": 0.0, "NSD": 1.0}


def test_surface_metrics_for_empty_masks() -> None:
    empty = np.zeros((4, 5, 6), bool)
    full = empty.copy()
    full[1, 1, 1] = True
    both_empty = surface_metrics(empty, empty, (1, 1, 1))
    assert np.isnan(both_empty["HD95"]) and np.isnan(both_empty["NSD"])
    missed = surface_metrics(full, empty, (2.0, 1.0, 1.0))
    assert missed["NSD"] == 0 and missed["HD95"] == pytest.approx(np.sqrt(8**2 + 5**2 + 6**2))  # image diagonal


def test_case_metrics_with_spacing_adds_surface_metrics_per_label() -> None:
    reference = np.zeros((6, 6, 6), np.uint8)
    reference[1:4, 1:4, 1:4] = 1
    metrics = case_metrics(reference, reference, {"background": 0, "a": 1, "b": 2}, spacing=(1, 1, 1))
    assert metrics["1"]["HD95"] == 0 and metrics["1"]["NSD"] == 1 and metrics["1"]["Dice"] == 1
    assert np.isnan(metrics["2"]["HD95"]) and np.isnan(metrics["2"]["Dice"])
    summary = summarize({"c": metrics})
    assert summary["foreground_mean"]["NSD"] == 1.0  # the empty label is left out of the mean, as for Dice
