"""The fingerprint follows nnU-Net's definition (crop, seeded foreground sample, pooled statistics)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nnlight.fingerprint import Fingerprint, compute_fingerprint, load_fingerprint
from nnlight.fingerprint.fingerprint import analyze_case, save_fingerprint
from nnlight.raw.cropping import crop_to_nonzero
from nnlight.raw.dataset import read_case, require_raw_dataset
from nnlight.utils.errors import UserError

pytestmark = pytest.mark.integration


def test_crop_to_nonzero_marks_outside_background() -> None:
    data = np.zeros((2, 6, 7, 8), np.float32)
    data[0, 1:5, 2:6, 3:7] = 1.0
    data[1, 2, 2, 2] = 3.0  # channel 1 widens the box on every axis' lower bound
    seg = np.zeros((1, 6, 7, 8), np.int16)
    seg[0, 3, 3, 3] = 1
    cropped, seg_cropped, box = crop_to_nonzero(data, seg)
    assert box == [(1, 5), (2, 6), (2, 7)]
    assert cropped.shape == (2, 4, 4, 5)
    assert seg_cropped[0, 2, 1, 1] == 1
    inside = (cropped != 0).any(0)
    assert np.all(seg_cropped[0][~inside] == -1) and np.all(seg_cropped[0][inside & (seg_cropped[0] != 1)] == 0)


def test_case_analysis_matches_hand_computation(demo_3d: Path) -> None:
    dataset = require_raw_dataset(demo_3d)
    case = dataset.cases[1]
    result = analyze_case(case, dataset.dataset_json, dataset.image_format, num_samples=1000)

    _, images, seg, geometry = read_case(case, dataset.dataset_json, dataset.image_format)
    nonzero = np.argwhere((images != 0).any(0))
    low, high = nonzero.min(0), nonzero.max(0) + 1
    assert result.shape_after_crop == tuple(int(h - lo) for lo, h in zip(low, high, strict=True))
    assert result.relative_size_after_cropping == pytest.approx(np.prod(high - low) / np.prod(images.shape[1:]))
    assert result.spacing == pytest.approx(geometry.spacing)
    rng = np.random.RandomState(1234)  # nnU-Net's seed, one stream per case over the channels
    crop = tuple(slice(lo, h) for lo, h in zip(low, high, strict=True))
    foreground = seg[0][crop] > 0
    for c in range(2):
        expected = rng.choice(images[c][crop][foreground], 1000, replace=True)
        np.testing.assert_array_equal(result.foreground_samples[c], expected)


def test_dataset_fingerprint_pools_samples(demo_3d: Path, tmp_path: Path) -> None:
    dataset = require_raw_dataset(demo_3d)
    budget = 1e5  # nnU-Net samples 1e8 voxels in total; a smaller budget keeps the test fast
    fingerprint = compute_fingerprint(dataset, num_workers=0, sample_budget=budget)
    per_case = int(budget // len(dataset.cases))
    analyses = [analyze_case(c, dataset.dataset_json, dataset.image_format, per_case) for c in dataset.cases]
    pooled = np.concatenate([a.foreground_samples[0] for a in analyses])
    stats = fingerprint.foreground_intensity_properties_per_channel["0"]
    assert stats["mean"] == pytest.approx(float(np.mean(pooled)))
    assert stats["std"] == pytest.approx(float(np.std(pooled)))
    assert stats["percentile_99_5"] == pytest.approx(float(np.percentile(pooled, 99.5)))
    assert fingerprint.median_relative_size_after_cropping == pytest.approx(
        float(np.median([a.relative_size_after_cropping for a in analyses])))
    assert fingerprint.case_identifiers == [c.case_id for c in dataset.cases]

    save_fingerprint(fingerprint, tmp_path / "fingerprint.json")
    assert load_fingerprint(tmp_path / "fingerprint.json") == fingerprint


def test_parallel_and_serial_fingerprints_agree(demo_3d: Path) -> None:
    dataset = require_raw_dataset(demo_3d)
    assert compute_fingerprint(dataset, num_workers=2, sample_budget=1e5) == \
        compute_fingerprint(dataset, num_workers=0, sample_budget=1e5)


def test_nnunet_dataset_fingerprint_json_loads(tmp_path: Path) -> None:
    """nnU-Net writes channel keys as strings and no case identifiers."""
    nnunet = {"spacings": [[1.0, 0.8, 0.8]], "shapes_after_crop": [[100, 200, 210]],
              "foreground_intensity_properties_per_channel": {"0": {
                  "max": 3071.0, "mean": 99.4, "median": 101.0, "min": -1024.0, "percentile_00_5": -958.0,
                  "percentile_99_5": 276.0, "std": 76.4}},
              "median_relative_size_after_cropping": 1.0}
    path = tmp_path / "dataset_fingerprint.json"
    path.write_text(json.dumps(nnunet))
    fingerprint = load_fingerprint(path)
    assert isinstance(fingerprint, Fingerprint) and fingerprint.case_identifiers is None
    assert fingerprint.to_dict() == nnunet


def test_not_a_fingerprint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "plans.json"
    path.write_text(json.dumps({"configurations": {}}))
    with pytest.raises(UserError, match="spacings"):
        load_fingerprint(path)
