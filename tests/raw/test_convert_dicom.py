"""nnlight-convert-dicom (issue 34, item 4): a generated TCIA-style collection (two CT phases and a SEG per study)
becomes an nnU-Net raw dataset with its labels unified by segment name, its geometry kept, and every problem one
note; then plan, train and predict (DICOM in, SEG out) run on it unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnlight.pipeline.demo_data import PHASES, make_dicom_collection
from nnlight.raw.convert_dicom import convert_dicom, label_names
from nnlight.raw.dicom import read_dicom_case, scan_dicom
from nnlight.raw.io import read_image_file
from nnlight.raw.synthetic import synthetic_case
from nnlight.utils.errors import UserError
from tests.conftest import TINY_BUDGET, Roots, run_entry, run_script

pytest.importorskip("highdicom", reason='the DICOM tests need highdicom (pip install "nnlight[dicom]")')
SHAPE = (12, 24, 20)
SYNONYMS = {"bright_blob": ["bright blob"], "dark_blob": ["dark blob", "hypodense lesion"]}


def _expected_labels(num_cases: int) -> list[np.ndarray]:
    """The label maps make_dicom_collection drew (the same generator, the same seed)."""
    rng = np.random.default_rng(0)
    return [synthetic_case(SHAPE, len(PHASES), rng)[1] for _ in range(num_cases)]


def test_a_collection_becomes_a_dataset_with_unified_labels_its_geometry_and_notes(tmp_path: Path) -> None:
    from nnlight.inference.dicom_seg import SegSettings, write_dicom_seg

    collection = make_dicom_collection(tmp_path / "collection", num_cases=3, shape=SHAPE)
    (first,) = scan_dicom(collection / "PATIENT001" / "study" / "1-arterial").series
    expected = _expected_labels(3)
    extra = np.where(expected[1] == 1, 1, 0).astype(np.uint8)  # a second SEG: "dark blob" over the bright blob
    extra[0, 0, 0] = 2
    write_dicom_seg(extra, first, read_dicom_case((first,))[1],
                    SegSettings.of_labels({"dark blob": 1, "cyst": 2, "scar": 3}, "a reader"),
                    collection / "PATIENT001" / "study" / "301-segmentation" / "1-1.dcm")

    without = convert_dicom(collection, tmp_path / "raw", 951, "EveryName", ["arterial", "venous"])
    assert list(without.labels) == ["background", "bright blob", "cyst", "dark blob", "hypodense lesion", "scar"]

    done = convert_dicom(collection, tmp_path / "raw", 952, "Unified", ["arterial", "venous"],
                         _labels_file(tmp_path))
    assert done.labels == {"background": 0, "bright_blob": 1, "dark_blob": 2}
    assert done.channel_names == {"0": "CT", "1": "CT"}  # CT in every case: nnU-Net's CT normalization
    assert len(done.cases) == 3 and all(case.startswith("PATIENT00") for case in done.cases)
    case_1 = next(c for c in done.cases if c.startswith("PATIENT001"))
    assert any(f"case {case_1}: segment 'cyst' (1-1.dcm) matches no label" in note for note in done.notes)
    assert f"case {case_1}: segment 'scar' is empty" in without.notes
    overlap = int(np.count_nonzero(expected[1] == 1))
    assert f"case {case_1}: 'dark_blob' overlaps 'bright_blob' in {overlap} voxels; 'dark_blob' (the higher " \
           "label) is kept there" in done.notes

    folder = done.dataset
    assert json.loads((folder / "dataset.json").read_text())["numTraining"] == 3
    for case, truth in zip(sorted(done.cases), expected, strict=True):
        label, geometry = read_image_file(folder / "labelsTr" / f"{case}.nii.gz")
        wanted = np.where(truth > 0, truth, 0)
        if case == case_1:  # the second SEG's "dark blob" covers the bright blob
            wanted = np.where(expected[1] == 1, 2, wanted)
        assert np.array_equal(label[0], wanted), case
        study = collection / f"PATIENT{case[7:10]}" / "study"
        images, source = read_dicom_case(tuple(scan_dicom(study / f"{k + 1}-{p}").series[0]
                                                for k, p in enumerate(PHASES)))
        for channel in range(len(PHASES)):
            image, image_geometry = read_image_file(folder / "imagesTr" / f"{case}_{channel:04d}.nii.gz")
            assert np.array_equal(image[0], images[channel])
        assert np.allclose(geometry.sitk_origin, source.sitk_origin) and np.allclose(geometry.sitk_spacing,
                                                                                      (0.8, 0.8, 2.5))
        assert np.allclose(image_geometry.sitk_direction, source.sitk_direction)


def _labels_file(tmp_path: Path) -> Path:
    file = tmp_path / "labels.json"
    file.write_text(json.dumps(SYNONYMS))
    return file


def test_bad_label_files_and_collections_without_segs_are_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"liver": ["Liver"], "tumor": ["liver"]}))
    with pytest.raises(UserError, match=r"'liver' is a name of both 'liver' and 'tumor'; give it to one label"):
        label_names(bad)
    bad.write_text(json.dumps({"liver": "Liver"}))
    with pytest.raises(UserError, match=r'labels=.*bad.json: write \{"<label>": \["<segment name>", ...\]'):
        label_names(bad)
    collection = make_dicom_collection(tmp_path / "c", num_cases=1, shape=SHAPE)
    for seg in collection.rglob("300-segmentation/*.dcm"):
        seg.unlink()
    with pytest.raises(UserError, match=r"no image series with a DICOM SEG referring to it \(case .*: no SEG refers"):
        convert_dicom(collection, tmp_path / "raw", 953, "NoLabels")
    assert not (tmp_path / "raw" / "Dataset953_NoLabels").exists()


@pytest.mark.cli
def test_convert_plan_train_and_predict_dicom_in_seg_out_on_a_collection(tmp_path: Path) -> None:
    """The issue's chain, as a user types it: demo collection, convert, plan, train briefly, predict the DICOM
    folder with the channel rule into SEGs that pass the validator and equal the NIfTI predictions."""
    from tests.pipeline.test_predict_dicom import _check_seg

    roots = Roots(tmp_path / "raw", tmp_path / "preprocessed", tmp_path / "results")
    collection = tmp_path / "collection"
    for argv in (["-m", "nnlight.pipeline.demo_data", f"dicom={collection}", "cases=5"],
                 ["-m", "nnlight.raw.convert_dicom", f"input={collection}", "id=954", "name=Collection",
                  f"raw={roots.raw}", "channels=arterial,venous", f"labels={_labels_file(tmp_path)}"]):
        result = run_entry(argv, tmp_path, roots.env())
        assert result.returncode == 0, result.stderr[-3000:]
    assert "Converted 5 case(s)" in result.stdout
    assert "Next: nnlight-plan dataset=Dataset954_Collection" in result.stdout
    for script, args in (("plan.py", ["dataset=Dataset954_Collection", "num_workers=0"]),
                         ("train.py", ["plan=Dataset954_Collection/3d_fullres", *TINY_BUDGET,
                                       "validation.enabled=false"])):
        result = run_script(script, *args, roots=roots)
        assert result.returncode == 0, result.stderr[-3000:]
    model = next((roots.results / "Dataset954_Collection" / "3d_fullres").glob("*/fold_0")).parent
    patient = collection / "PATIENT003"
    output = tmp_path / "predicted"
    result = run_script("predict.py", f"model='{model}'", "mirroring=false", f"input={patient}", f"output={output}",
                        "output_format=dicom_seg", "dicom_channels=[arterial,venous]", roots=roots)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "a segmentation (SEG), not an image to segment" in result.stdout  # the collection's own SEG
    (seg,) = output.glob("*_seg.dcm")
    assert seg.name.startswith("PATIENT003_")
    prediction = sitk.GetArrayFromImage(sitk.ReadImage(str(next(output.glob("*.nii.gz")))))
    _check_seg(seg, prediction, patient / "study" / "1-arterial")
