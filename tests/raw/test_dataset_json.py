from __future__ import annotations

from nnlight.raw.dataset_json import dataset_name_problem, parse_dataset_json

BASE = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1}, "numTraining": 3,
        "file_ending": ".nii.gz"}


def test_valid_dataset_json() -> None:
    parsed, problems = parse_dataset_json(BASE, "dataset.json")
    assert problems == [] and parsed is not None
    assert parsed.num_channels == 1 and parsed.label_values == [0, 1] and parsed.ignore_label is None


def test_legacy_modality_key_is_accepted() -> None:
    data = {k: v for k, v in BASE.items() if k != "channel_names"} | {"modality": {"0": "MRI"}}
    parsed, problems = parse_dataset_json(data, "dataset.json")
    assert problems == [] and parsed.channel_name_list == ["MRI"]


def test_ignore_label_must_be_the_highest() -> None:
    ok, problems = parse_dataset_json({**BASE, "labels": {"background": 0, "liver": 1, "ignore": 2}}, "d")
    assert problems == [] and ok.ignore_label == 2 and ok.allowed_label_values == [0, 1, 2]
    _, problems = parse_dataset_json({**BASE, "labels": {"background": 0, "liver": 2, "ignore": 1}}, "d")
    assert any("consecutive" in p for p in problems)


def test_regions_need_regions_class_order() -> None:
    labels = {"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [2, 3], "enhancing": 3}
    _, problems = parse_dataset_json({**BASE, "labels": labels}, "d")
    assert any("regions_class_order" in p for p in problems)
    parsed, problems = parse_dataset_json({**BASE, "labels": labels, "regions_class_order": [1, 2, 3]}, "d")
    assert problems == [] and parsed.has_regions and parsed.label_values == [0, 1, 2, 3]


def test_all_problems_are_collected() -> None:
    _, problems = parse_dataset_json({"channel_names": [], "labels": {"tumor": "1"}, "numTraining": -1,
                                      "file_ending": "nii"}, "x/dataset.json")
    joined = "\n".join(problems)
    for key in ("channel_names", "tumor", "background", "numTraining", "file_ending"):
        assert key in joined
    assert all(p.startswith("x/dataset.json") for p in problems)


def test_dataset_name_convention() -> None:
    assert dataset_name_problem("Dataset101_BraTS2015Mini", "f") is None
    assert "Dataset501_" in dataset_name_problem("brats", "f")
    assert dataset_name_problem("Dataset1_X", "f") is not None
