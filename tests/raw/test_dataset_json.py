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


def test_twelve_channels_are_accepted_in_numeric_order(tmp_path) -> None:
    """A string sort puts "10" before "2": eleven or more channels used to be refused."""
    from nnlight.fingerprint import compute_fingerprint
    from nnlight.planning import PlannerSettings, plan_experiment
    from nnlight.raw.dataset import require_raw_dataset
    from nnlight.raw.synthetic import make_synthetic_dataset

    names = {str(i): ("CT" if i == 10 else f"MR{i}") for i in range(12)}
    parsed, problems = parse_dataset_json({**BASE, "channel_names": names}, "dataset.json")
    assert problems == [] and parsed.channel_name_list == [names[str(i)] for i in range(12)]
    dataset = require_raw_dataset(make_synthetic_dataset(tmp_path, 912, "Twelve", num_cases=3, shape=(8, 16, 16),
                                                         num_channels=12, num_test_cases=0))
    plan = plan_experiment(compute_fingerprint(dataset, 0, sample_budget=1e4), dataset.dataset_json,
                           PlannerSettings(), dataset.name).configurations["3d_fullres"]
    assert len(plan.normalization_schemes) == 12


def test_instance_maps_learn_border_core_labels_of_their_one_object_label() -> None:
    parsed, problems = parse_dataset_json({**BASE, "labels": {"background": 0, "cell": 1}, "instance_maps": True}, "d")
    assert problems == [] and parsed.instance_maps and parsed.object_name == "cell"
    assert parsed.training_labels == {"background": 0, "cell_core": 1, "cell_border": 2}
    assert parsed.layout.num_outputs == 3 and parsed.labels == {"background": 0, "cell": 1}


def test_instance_maps_refuse_regions_several_labels_and_non_booleans() -> None:
    regions = {**BASE, "labels": {"background": 0, "cells": [1, 2], "nuclei": [2]}, "regions_class_order": [1, 2],
               "instance_maps": True}
    assert any("region labels" in p for p in parse_dataset_json(regions, "d")[1])
    two = {**BASE, "labels": {"background": 0, "cell": 1, "nucleus": 2}, "instance_maps": True}
    assert any("exactly one foreground label" in p for p in parse_dataset_json(two, "d")[1])
    assert any('"instance_maps" must be true or false' in p
               for p in parse_dataset_json({**BASE, "instance_maps": "yes"}, "d")[1])
