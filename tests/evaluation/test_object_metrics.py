"""Object scores: matching at an IoU threshold, F1 / AP / PQ, the Cell Tracking Challenge's SEG, Rand error, VI."""

from __future__ import annotations

import math

import numpy as np

from nnlight.evaluation.object_metrics import instance_metrics, rand_error_and_vi


def _reference() -> np.ndarray:
    ref = np.zeros((1, 20, 40), np.int32)
    ref[0, 2:10, 2:10], ref[0, 2:10, 20:30], ref[0, 12:18, 2:38] = 1, 2, 3
    return ref


def test_a_perfect_prediction_scores_one_whatever_its_ids() -> None:
    ref = _reference()
    scores = instance_metrics(ref, np.where(ref > 0, 10 - ref, 0))  # renumbered
    assert scores["F1"] == scores["AP50"] == scores["AP90"] == scores["PQ"] == scores["SEG"] == 1.0
    assert scores["ARE"] == 0.0 and scores["VI"] == 0.0
    assert (scores["obj_TP"], scores["obj_FP"], scores["obj_FN"]) == (3, 0, 0)


def test_a_split_object_is_one_miss_and_three_false_objects_and_raises_the_split_errors() -> None:
    ref = _reference()
    pred = ref.copy()
    pred[0, 12:18, 14:26], pred[0, 12:18, 26:38] = 4, 5  # object 3 in three thirds: none reaches IoU 0.5
    scores = instance_metrics(ref, pred)
    assert (scores["obj_TP"], scores["obj_FP"], scores["obj_FN"]) == (2, 3, 1)
    assert math.isclose(scores["F1"], 4 / 8)
    assert math.isclose(scores["SEG"], 2 / 3)  # no half covers more than half of object 3
    assert scores["ARE"] > 0 and scores["VI"] > 0


def test_a_merge_and_a_missed_object() -> None:
    ref = _reference()
    pred = np.zeros_like(ref)
    pred[0, 2:10, 2:30] = 1  # objects 1 and 2 (and the gap between) as one
    scores = instance_metrics(ref, pred)
    assert (scores["obj_TP"], scores["obj_FP"], scores["obj_FN"]) == (0, 1, 3)
    assert scores["F1"] == 0.0 and scores["PQ"] == 0.0
    # SEG: object 2 is more than half covered by the merged object (IoU 80/224), object 1 too (64/224)
    assert math.isclose(scores["SEG"], (64 / 224 + 80 / 224) / 3)


def test_no_objects_anywhere_is_undefined_not_perfect() -> None:
    empty = np.zeros((1, 5, 5), np.int32)
    scores = instance_metrics(empty, empty)
    assert all(math.isnan(scores[k]) for k in ("F1", "AP50", "PQ", "SEG", "ARE", "VI"))


def test_rand_error_and_vi_match_their_definitions_on_a_small_table() -> None:
    # reference objects 1 (4 voxels) and 2 (4 voxels); the prediction merges them into one
    ref = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    pred = np.ones(8, np.int32)
    are, vi = rand_error_and_vi(ref, pred)
    # precision = (sum p_ij^2 - n) / (sum b_j^2 - n) = (32 - 8) / (64 - 8); recall = (32 - 8) / (32 - 8) = 1
    precision = 24 / 56
    assert math.isclose(are, 1 - 2 * precision / (precision + 1))
    assert math.isclose(vi, math.log(2))  # H(ref | pred) = log 2, H(pred | ref) = 0
