"""nnlight-predict on a folder of DICOM files (issue 34, first part): one case per image series, the same
segmentation as from the NIfTI image with the same values and geometry, bad series one line each."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from nnlight.raw.dicom import write_dicom_series
from nnlight.raw.io import read_image_file
from nnlight.raw.synthetic import make_synthetic_dataset
from tests.conftest import ORTHANC_USER, TINY_BUDGET, Orthanc, Roots, run_script

pytestmark = pytest.mark.cli

UID = "1.2.826.0.1.3680043.8.498.4242"


@pytest.fixture(scope="module")
def one_channel_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Roots, Path]:
    """A 1-channel synthetic CT-like dataset, planned and its 3d_fullres trained briefly."""
    base = tmp_path_factory.mktemp("dicom")
    roots = Roots(base / "raw", base / "preprocessed", base / "results")
    make_synthetic_dataset(roots.raw, 931, "OneChannel", num_cases=5, num_channels=1, num_test_cases=1)
    for script, args in (("plan.py", ["dataset=Dataset931_OneChannel", "num_workers=0"]),
                         ("train.py", ["plan=Dataset931_OneChannel/3d_fullres", *TINY_BUDGET,
                                       "validation.enabled=false"])):
        result = run_script(script, *args, roots=roots)
        assert result.returncode == 0, result.stderr[-3000:]
    return roots, next((roots.results / "Dataset931_OneChannel" / "3d_fullres").glob("*/fold_0")).parent


def test_a_dicom_folder_is_segmented_as_its_nifti_and_a_bad_series_is_one_line(one_channel_model, tmp_path: Path
                                                                                ) -> None:
    roots, model = one_channel_model
    test_image = next((roots.raw / "Dataset931_OneChannel" / "imagesTs").glob("*_0000.nii.gz"))
    image, geometry = read_image_file(test_image)
    volume = np.round(image[0]).astype(np.int16)
    nifti = tmp_path / "nifti"
    nifti.mkdir()
    reference = sitk.GetImageFromArray(volume)
    reference.SetSpacing(geometry.sitk_spacing)
    reference.SetOrigin(geometry.sitk_origin)
    reference.SetDirection(geometry.sitk_direction)
    sitk.WriteImage(reference, str(nifti / "case_0000.nii.gz"))
    dicom = tmp_path / "dicom"
    write_dicom_series(volume, geometry, dicom / "patient" / "study" / "series1", UID, description="abdomen",
                       intercept=-1024, file_names=[f"{k * 7919 % 1000:03d}" for k in range(volume.shape[0])])
    bad = write_dicom_series(volume, geometry, dicom / "patient" / "study" / "series2", UID + ".2",
                             description="incomplete", series_number=2)
    bad[len(bad) // 2].unlink()  # a slice missing in the middle
    damaged = write_dicom_series(volume, geometry, dicom / "patient" / "study" / "series3", UID + ".3",
                                 description="damaged", series_number=3)
    data = damaged[1].read_bytes()
    damaged[1].write_bytes(data[: len(data) - 200])  # cut short: GDCM cannot read it, so a slice is missing
    (dicom / "README.txt").write_text("exported by the PACS")

    common = [f"model='{model}'", "mirroring=false"]
    from_nifti = run_script("predict.py", *common, f"input={nifti}", f"output={tmp_path / 'out_nifti'}", roots=roots)
    assert from_nifti.returncode == 0, from_nifti.stderr[-3000:]
    from_dicom = run_script("predict.py", *common, f"input={dicom}", f"output={tmp_path / 'out_dicom'}", roots=roots)
    assert from_dicom.returncode == 2 and "Traceback" not in from_dicom.stderr, from_dicom.stderr[-3000:]
    assert "2 of 3 image(s) failed" in from_dicom.stderr and "Set aside: " in from_dicom.stdout
    failed = json.loads((tmp_path / "out_dicom" / "failed.json").read_text())["failed"]
    assert sorted(case[:-9] for case in failed) == ["damaged_3", "incomplete_2"]
    incomplete, damaged_why = (next(why for case, why in failed.items() if case.startswith(name))
                               for name in ("incomplete_2", "damaged_3"))
    assert "missing slices" in incomplete and "missing slices: 5 mm between slices 0 and 1" in damaged_why
    assert f"Set aside: {damaged[1]}: a damaged or truncated DICOM file" in from_dicom.stdout
    written = sorted((tmp_path / "out_dicom").glob("*.nii.gz"))
    assert len(written) == 1 and written[0].name.startswith("abdomen_1_")
    ours, theirs = (sitk.ReadImage(str(p)) for p in (written[0], tmp_path / "out_nifti" / "case.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(theirs))
    assert np.allclose(ours.GetOrigin(), theirs.GetOrigin(), atol=1e-4)
    assert np.allclose(ours.GetSpacing(), theirs.GetSpacing(), atol=1e-4)
    assert np.allclose(ours.GetDirection(), theirs.GetDirection(), atol=1e-5)

    with_seg = run_script("predict.py", *common, f"input={dicom}", f"output={tmp_path / 'out_seg'}",
                          "output_format=dicom_seg", roots=roots)
    assert with_seg.returncode == 2, with_seg.stderr[-3000:]  # the incomplete series again
    segs = sorted((tmp_path / "out_seg").glob("*_seg.dcm"))
    assert [p.name[:-len("_seg.dcm")] for p in segs] == [written[0].name[:-len(".nii.gz")]]
    _check_seg(segs[0], sitk.GetArrayFromImage(theirs), dicom / "patient" / "study" / "series1")
    shutil.rmtree(tmp_path / "out_dicom")


def _check_seg(path: Path, expected: np.ndarray, source: Path,
               names: tuple[str, ...] = ("bright_blob", "dark_blob")) -> None:
    """The SEG passes the standard's validator (where installed) and holds ``expected`` frame by frame on the
    source slices, one segment per foreground label (``names``, dataset.json's, by value)."""
    import highdicom as hd
    import pydicom

    if shutil.which("dciodvfy"):
        check = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        errors = [line for line in (check.stdout + check.stderr).splitlines() if line.startswith("Error")]
        assert not errors, "\n".join(errors)
    seg = hd.seg.segread(str(path))
    assert seg.SegmentationType == "BINARY" and seg.number_of_segments == len(names)
    assert tuple(d.SegmentLabel for d in seg.SegmentSequence) == names
    sources = {pydicom.dcmread(str(f)).SOPInstanceUID: pydicom.dcmread(str(f)) for f in source.iterdir()}
    by_position = sorted(sources.values(), key=lambda d: float(d.ImagePositionPatient[2]))
    for k, image in enumerate(by_position):
        frames = seg.get_pixels_by_source_instance([image.SOPInstanceUID], combine_segments=True,
                                                   assert_missing_frames_are_empty=True)
        assert np.array_equal(frames[0], expected[k]), k


def test_dicom_input_for_a_multi_channel_model_is_refused_with_what_to_do(tmp_path: Path) -> None:
    from nnlight.inference.folder import dicom_cases
    from nnlight.raw.dicom import ChannelRule
    from nnlight.utils.errors import UserError

    with pytest.raises(UserError, match=r"this model takes 2 channels, and DICOM input needs a rule per channel"):
        dicom_cases(tmp_path, 2)
    with pytest.raises(UserError, match=r"dicom_channels gives 1 rule\(s\), and this model takes 2 channel\(s\)"):
        dicom_cases(tmp_path, 2, [ChannelRule.parse("t1")])


def test_a_study_on_a_pacs_is_read_by_dicomweb_and_its_seg_stored_back(one_channel_model, orthanc: Orthanc,
                                                                       tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's round trip: a study read from a real Orthanc (QIDO-RS, WADO-RS), its SEG stored back (STOW-RS)
    and found there, equal to the SEG written into the output folder; the credentials only in the environment."""
    import highdicom as hd
    from dicomweb_client import DICOMwebClient
    from dicomweb_client.session_utils import create_session_from_user_pass

    roots, model = one_channel_model
    image, geometry = read_image_file(next((roots.raw / "Dataset931_OneChannel" / "imagesTs").glob("*_0000.nii.gz")))
    series = write_dicom_series(np.round(image[0]).astype(np.int16), geometry, tmp_path / "scanner", UID + ".20",
                                description="abdomen")
    study_uid = UID + ".1"
    client = DICOMwebClient(orthanc.dicomweb, session=create_session_from_user_pass(*ORTHANC_USER))
    client.store_instances([pydicom.dcmread(str(p)) for p in series], study_uid)
    monkeypatch.delenv("NNLIGHT_DICOMWEB_TOKEN", raising=False)
    monkeypatch.setenv("NNLIGHT_DICOMWEB_USER", ORTHANC_USER[0])
    monkeypatch.setenv("NNLIGHT_DICOMWEB_PASSWORD", ORTHANC_USER[1])

    output = tmp_path / "out"
    result = run_script("predict.py", f"model='{model}'", "mirroring=false", f"input={orthanc.dicomweb}/studies/"
                        f"{study_uid}", f"output={output}", "output_format=dicom_seg", roots=roots)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"stored 1 DICOM SEG(s) in study {orthanc.dicomweb}/studies/{study_uid}" in result.stdout
    assert ORTHANC_USER[1] not in (output / ".hydra" / "config.yaml").read_text() + result.stdout
    assert not (output / ".dicomweb").exists()  # the downloaded copy goes once every series is predicted
    written, = output.glob("*_seg.dcm")
    stored, = client.search_for_series(study_uid, search_filters={"Modality": "SEG"})
    seg_series = stored["0020000E"]["Value"][0]
    from_server, = client.retrieve_series(study_uid, seg_series)
    ours = hd.seg.segread(str(written))
    assert from_server.SOPInstanceUID == ours.SOPInstanceUID
    assert np.array_equal(hd.seg.Segmentation.from_dataset(from_server).pixel_array, ours.pixel_array)
    _check_seg(written, sitk.GetArrayFromImage(sitk.ReadImage(str(next(output.glob("*.nii.gz"))))),
               tmp_path / "scanner")


def test_a_seg_that_cannot_be_written_fails_its_case_alone(one_channel_model, tmp_path: Path) -> None:
    """A series no SEG can refer to is one line in failed.json; its segmentation image and the other cases are
    written."""
    from nnlight.inference.folder import AlsoWrite, input_cases, predict_folder
    from nnlight.inference.predictor import Predictor
    from nnlight.utils.errors import UserError

    roots, model = one_channel_model
    images = tmp_path / "images"
    images.mkdir()
    for k, source in enumerate(sorted((roots.raw / "Dataset931_OneChannel" / "imagesTr").glob("*_0000.nii.gz"))[:2]):
        shutil.copy(source, images / f"case{k}_0000.nii.gz")
    cases, _ = input_cases(images, ".nii.gz", 1)

    def write(case: str, segmentation: np.ndarray, geometry: object, path: Path) -> None:
        if case == "case1":
            raise UserError("DICOM series case1: no DICOM SEG can refer to it")
        path.write_text("a SEG")

    predictor = Predictor.from_model_folder(model, mirroring=False, device="cpu")
    report = predict_folder(predictor, cases, tmp_path / "out", ".nii.gz",
                            also_write=AlsoWrite(lambda folder, case: folder / f"{case}_seg.dcm", write))
    assert report.predicted == ["case0"] and list(report.failed) == ["case1"]
    assert "no DICOM SEG can refer to it" in json.loads((tmp_path / "out" / "failed.json").read_text())["failed"][
        "case1"]
    assert sorted(p.name for p in (tmp_path / "out").glob("case*")) == ["case0.nii.gz", "case0_seg.dcm",
                                                                         "case1.nii.gz"]
