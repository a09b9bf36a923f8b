"""Post-processing selection follows nnU-Net's rule on constructed cases."""

from __future__ import annotations

import numpy as np

from nnlight.evaluation.postprocessing_search import (
    PostprocessingRules,
    apply_postprocessing,
    determine_postprocessing,
    keep_largest_component,
)

LABELS = {"background": 0, "organ": 1, "lesion": 2}


def _reference() -> np.ndarray:
    seg = np.zeros((1, 20, 20), np.uint8)
    seg[0, 2:10, 2:10] = 1
    seg[0, 4:6, 4:6] = 2  # the lesion inside the organ: one foreground component
    return seg


def test_keep_largest_component_removes_only_smaller_pieces() -> None:
    seg = _reference()
    seg[0, 15:17, 15:17] = 1
    cleaned = keep_largest_component(seg, [1, 2])
    assert cleaned[0, 15:17, 15:17].sum() == 0 and np.array_equal(cleaned, _reference())


def test_a_spurious_blob_is_removed_when_it_helps_and_no_label_gets_worse(tmp_path) -> None:
    reference = {"a": _reference(), "b": _reference()}
    prediction = {c: r.copy() for c, r in reference.items()}
    prediction["a"][0, 15:18, 15:18] = 1  # a false positive far from everything
    rules, before, after = determine_postprocessing(prediction, reference, LABELS)
    assert rules.keep_largest_foreground
    assert after["foreground_mean"]["Dice"] > before["foreground_mean"]["Dice"]
    rules.save(tmp_path / "pp.json")
    assert PostprocessingRules.load(tmp_path / "pp.json") == rules


def test_foreground_step_is_rejected_when_a_label_gets_worse() -> None:
    reference = _reference()
    reference[0, 14:19, 14:19] = 2  # a real second lesion, apart from the organ
    prediction = reference.copy()
    prediction[0, 14:19, 14:16] = 0  # partly missed, so removing the smaller component costs lesion Dice
    reference_b, prediction_b = _reference(), _reference()
    prediction_b[0, 15:17, 15:17] = 1  # elsewhere a false-positive organ blob that the foreground step removes
    rules, _, _ = determine_postprocessing({"a": prediction, "b": prediction_b}, {"a": reference, "b": reference_b},
                                           LABELS)
    assert not rules.keep_largest_foreground  # lesion would lose its second component in case a
    assert rules.keep_largest_per_label == [1]  # per label: only the organ's stray blob goes


def test_apply_follows_the_rules() -> None:
    seg = _reference()
    seg[0, 15:18, 15:18] = 2  # a 3x3 lesion piece, larger than the 2x2 one inside the organ
    assert np.array_equal(apply_postprocessing(seg, PostprocessingRules(), [1, 2]), seg)
    cleaned = apply_postprocessing(seg, PostprocessingRules(keep_largest_per_label=[2]), [1, 2])
    assert (cleaned[0, 15:18, 15:18] == 2).all()  # the largest lesion piece stays
    assert (cleaned[0, 4:6, 4:6] == 0).all()  # the smaller one becomes background, as in nnU-Net
    assert np.array_equal(cleaned == 1, seg == 1)  # the organ is untouched
    only_foreground = apply_postprocessing(seg, PostprocessingRules(keep_largest_foreground=True), [1, 2])
    assert (only_foreground[0, 15:18, 15:18] == 0).all() and np.array_equal(only_foreground, _reference())
