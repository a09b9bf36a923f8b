"""Medical Segmentation Decathlon folders (4D multi-channel NIfTI) convert into a valid raw dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnlight.raw.dataset import open_raw_dataset
from nnlight.raw.msd import convert_msd
from nnlight.utils.errors import UserError


def _write_4d(path: Path, channels: np.ndarray) -> None:
    image = sitk.JoinSeries([sitk.GetImageFromArray(c) for c in channels])
    image.SetSpacing((0.9, 0.9, 2.5, 1.0))
    sitk.WriteImage(image, str(path))


@pytest.fixture
def msd_task(tmp_path: Path) -> Path:
    task = tmp_path / "Task01_BrainTumour"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (task / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for case in ("BRATS_001", "BRATS_002"):
        _write_4d(task / "imagesTr" / f"{case}.nii.gz", rng.normal(size=(2, 6, 8, 7)).astype(np.float32))
        label = sitk.GetImageFromArray(rng.integers(0, 3, (6, 8, 7)).astype(np.uint8))
        label.SetSpacing((0.9, 0.9, 2.5))
        sitk.WriteImage(label, str(task / "labelsTr" / f"{case}.nii.gz"))
    (task / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"macOS resource fork")
    _write_4d(task / "imagesTs" / "BRATS_900.nii.gz", rng.normal(size=(2, 6, 8, 7)).astype(np.float32))
    (task / "dataset.json").write_text(json.dumps({
        "name": "BRATS", "modality": {"0": "FLAIR", "1": "T1w"},
        "labels": {"0": "background", "1": "edema", "2": "tumor"}, "numTraining": 2,
        "training": [{"image": "./imagesTr/BRATS_001.nii.gz", "label": "./labelsTr/BRATS_001.nii.gz"}]}))
    return task


def test_msd_conversion_produces_a_valid_dataset(msd_task: Path, tmp_path: Path) -> None:
    target = convert_msd(msd_task, tmp_path / "raw")
    assert target.name == "Dataset001_BrainTumour"
    dataset, problems = open_raw_dataset(target)
    assert problems == []
    assert dataset.dataset_json.channel_name_list == ["FLAIR", "T1w"]
    assert dataset.dataset_json.labels == {"background": 0, "edema": 1, "tumor": 2}
    assert [c.case_id for c in dataset.cases] == ["BRATS_001", "BRATS_002"]
    source = sitk.GetArrayFromImage(sitk.ReadImage(str(msd_task / "imagesTr" / "BRATS_002.nii.gz")))
    channel1 = sitk.ReadImage(str(target / "imagesTr" / "BRATS_002_0001.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(channel1), source[1])
    assert channel1.GetSpacing() == pytest.approx((0.9, 0.9, 2.5))
    assert (target / "imagesTs" / "BRATS_900_0001.nii.gz").is_file()


def test_msd_refuses_to_overwrite_and_bad_names(msd_task: Path, tmp_path: Path) -> None:
    convert_msd(msd_task, tmp_path / "raw", dataset_id=501)
    with pytest.raises(UserError, match="already exists"):
        convert_msd(msd_task, tmp_path / "raw", dataset_id=501)
    with pytest.raises(UserError, match="TaskXX_Name"):
        convert_msd(tmp_path, tmp_path / "raw")


def test_msd_command_line_error_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from nnlight.raw.msd import main

    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "not_a_task"), "--raw", str(tmp_path / "raw")])
    assert exit_info.value.code == 2
    assert "TaskXX_Name" in capsys.readouterr().err
    assert not (tmp_path / "raw").exists()
