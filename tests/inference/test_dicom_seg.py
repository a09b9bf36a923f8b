"""A prediction as a DICOM SEG (issue 34, item 3): valid by the standard's validator, equal to the prediction voxel
for voxel when read back with highdicom, for a classic series and an enhanced multi-frame image, as binary or
label-map SEG, with overlapping regions, coded segments and the algorithm identified."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from nnlight.raw.dicom import read_dicom_series, scan_dicom, write_dicom_series
from nnlight.raw.io import Geometry
from nnlight.utils.errors import UserError

hd = pytest.importorskip("highdicom", reason='the SEG tests need highdicom (pip install "nnlight[dicom]")')
from nnlight.inference.dicom_seg import SegSettings, load_segment_codes, write_dicom_seg  # noqa: E402

UID = "1.2.826.0.1.3680043.8.498.6161"
ANGLE = 0.2
GEOMETRY = Geometry((2.0, 0.9, 0.8), (0.8, 0.9, 2.0), (-5.0, 12.0, 30.0),
                    (np.cos(ANGLE), -np.sin(ANGLE), 0.0, np.sin(ANGLE), np.cos(ANGLE), 0.0, 0.0, 0.0, 1.0), False)


def _labels(shape: tuple[int, int, int] = (6, 14, 12)) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    labels[1:4, 2:9, 3:8] = 1
    labels[2:3, 4:7, 4:6] = 2
    labels[4, 10:12, 9:11] = 3
    return labels


# what dciodvfy (dicom3tools of 2022) says of the Label Map Segmentation IOD of DICOM 2024 (Supplement 243), which it
# predates: it knows no such object, and checks segment numbers by the binary SEG's rule (from one; a label map's
# background is segment 0)
PREDATES_LABEL_MAPS = ("Error - Information Object Not found",
                       "Error - SegmentNumber not monotonically increasing from one by one - have SegmentSequence "
                       "item number 1 (from one) with SegmentNumber of 0")


def _valid(path: Path, label_map: bool = False) -> None:
    """No error from dciodvfy (where installed); for a label map, none but those of a validator that predates it."""
    if shutil.which("dciodvfy") is None:
        return
    report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    errors = [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
    if label_map:
        errors = [line for line in errors if line not in PREDATES_LABEL_MAPS]
    assert not errors, "\n".join(errors)


def _series(tmp_path: Path) -> tuple[list[Path], object]:
    volume = np.random.default_rng(0).integers(-200, 200, (6, 14, 12)).astype(np.int16)
    paths = write_dicom_series(volume, GEOMETRY, tmp_path / "ct", UID + ".10", intercept=-1024)
    return paths, scan_dicom(tmp_path / "ct").series[0]


def _frames_by_slice(seg_path: Path, sources: list[Path], segments: list[int]) -> np.ndarray:
    import pydicom

    seg = hd.seg.segread(str(seg_path))
    uids = [pydicom.dcmread(str(p)).SOPInstanceUID for p in sources]
    return seg.get_pixels_by_source_instance(uids, segment_numbers=segments, combine_segments=False,
                                             assert_missing_frames_are_empty=True)


@pytest.mark.parametrize("seg_type", ["binary", "labelmap"])
def test_a_seg_of_a_series_holds_the_prediction_and_names_the_algorithm(tmp_path: Path, seg_type: str) -> None:
    paths, series = _series(tmp_path)
    labels = _labels()
    settings = SegSettings({"liver": (1,), "tumor": (2,), "cyst": (3,), "vessel": (4,)},
                           {"model": "results/Dataset1/3d_fullres/run", "configuration": "3d_fullres",
                            "folds": "fold_0, fold_1"}, seg_type)  # type: ignore[arg-type]
    write_dicom_seg(labels, series, GEOMETRY, settings, tmp_path / "seg.dcm")
    _valid(tmp_path / "seg.dcm", label_map=seg_type == "labelmap")
    seg = hd.seg.segread(str(tmp_path / "seg.dcm"))
    assert seg.SegmentationType == seg_type.upper()
    assert seg.file_meta.TransferSyntaxUID == ("1.2.840.10008.1.2.4.80" if seg_type == "labelmap" else
                                               "1.2.840.10008.1.2.1")  # a label map JPEG-LS lossless compressed
    background = ["Background"] if seg_type == "labelmap" else []  # a label map's segment 0 (highdicom's)
    assert [d.SegmentLabel for d in seg.SegmentSequence] == [*background, "liver", "tumor", "cyst", "vessel"]
    frames = _frames_by_slice(tmp_path / "seg.dcm", paths, [1, 2, 3, 4])
    for number in range(4):
        assert np.array_equal(frames[..., number], (labels == number + 1).astype(np.uint8)), number
    algorithm = seg.SegmentSequence[-1].SegmentationAlgorithmIdentificationSequence[0]
    assert algorithm.AlgorithmName == "nnlight" and algorithm.AlgorithmSource.endswith("3d_fullres/run")
    assert "folds=fold_0, fold_1" in algorithm.AlgorithmParameters and "configuration=3d_fullres" in \
        algorithm.AlgorithmParameters
    assert seg.SegmentSequence[-1].SegmentAlgorithmType == "AUTOMATIC"
    if seg_type == "binary":  # empty frames are left out: only the slices a segment is on
        assert seg.NumberOfFrames == 3 + 1 + 1


def test_regions_are_overlapping_segments_and_a_label_map_of_them_is_refused(tmp_path: Path) -> None:
    paths, series = _series(tmp_path)
    labels = _labels()
    regions = {"whole tumor": (1, 2, 3), "tumor core": (2, 3), "enhancing": (3,)}
    write_dicom_seg(labels, series, GEOMETRY, SegSettings(regions, {"model": "m"}), tmp_path / "seg.dcm")
    _valid(tmp_path / "seg.dcm")
    frames = _frames_by_slice(tmp_path / "seg.dcm", paths, [1, 2, 3])
    for number, values in enumerate(regions.values()):
        assert np.array_equal(frames[..., number], np.isin(labels, values).astype(np.uint8))
    with pytest.raises(UserError, match="dicom_seg_type=labelmap holds one label per voxel, and this model's "
                                        "regions overlap"):
        SegSettings(regions, {"model": "m"}, "labelmap")


def test_segments_carry_the_codes_file_and_a_bad_one_names_the_labels(tmp_path: Path) -> None:
    _, series = _series(tmp_path)
    file = tmp_path / "codes.json"
    file.write_text(json.dumps({"liver": {"category": ["SCT", "123037004", "Anatomical Structure"],
                                          "type": ["SCT", "10200004", "Liver"]}}))
    codes = load_segment_codes(file, ["liver", "tumor"])
    write_dicom_seg(_labels(), series, GEOMETRY, SegSettings({"liver": (1,), "tumor": (2,)}, {"model": "m"},
                                                             codes=codes), tmp_path / "seg.dcm")
    _valid(tmp_path / "seg.dcm")
    liver, tumor = hd.seg.segread(str(tmp_path / "seg.dcm")).SegmentSequence
    assert liver.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Liver"
    assert liver.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "123037004"
    assert tumor.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Tissue"  # the generic code
    file.write_text(json.dumps({"spleen": {"category": ["SCT", "1", "x"], "type": ["SCT", "2", "y"]}}))
    with pytest.raises(UserError, match=r"'spleen' is not a label of this model; its labels are liver, tumor"):
        load_segment_codes(file, ["liver", "tumor"])
    file.write_text(json.dumps({"liver": {"type": ["SCT", "10200004", "Liver"]}}))
    with pytest.raises(UserError, match=r"'liver' needs a category and a type, each \[coding scheme, code value"):
        load_segment_codes(file, ["liver", "tumor"])


def test_a_seg_of_an_enhanced_multi_frame_image_places_its_frames_by_position(tmp_path: Path) -> None:
    import pydicom

    paths, _ = _series(tmp_path)
    image = hd.legacy.LegacyConvertedEnhancedCTImage(
        [pydicom.dcmread(str(p)) for p in paths], series_instance_uid=UID + ".11", series_number=11,
        sop_instance_uid=UID + ".11.1", instance_number=1)
    (tmp_path / "enhanced").mkdir()
    image.save_as(tmp_path / "enhanced" / "IM1")
    (series,) = scan_dicom(tmp_path / "enhanced").series
    _, geometry = read_dicom_series(series)
    labels = _labels()
    write_dicom_seg(labels, series, geometry, SegSettings.of_labels({"liver": 1, "tumor": 2}, "m"),
                    tmp_path / "seg.dcm")
    _valid(tmp_path / "seg.dcm")
    seg = hd.seg.segread(str(tmp_path / "seg.dcm"))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == UID + ".11"
    volume = seg.get_volume(combine_segments=True)  # in patient space: compare position by position
    for k in range(labels.shape[0]):
        position = np.array(GEOMETRY.sitk_origin) + k * 2.0 * np.array([0.0, 0.0, 1.0])
        index = round(volume.map_reference_to_indices(position[None])[0][0])
        if 0 <= index < volume.spatial_shape[0]:
            assert np.array_equal(volume.array[index], np.where(labels[k] <= 2, labels[k], 0)), k
        else:
            assert not np.isin(labels[k], (1, 2)).any(), k


def test_an_instance_map_is_a_segment_per_object_with_its_labels_code(tmp_path: Path) -> None:
    paths, series = _series(tmp_path)
    objects = np.zeros((6, 14, 12), np.uint16)
    objects[1:3, 1:4, 1:4], objects[2:5, 6:9, 6:9], objects[4, 11:13, 2:4] = 1, 7, 3
    codes = {"cell": load_segment_codes(_codes(tmp_path, "cell"), ["cell"])["cell"]}
    write_dicom_seg(objects, series, GEOMETRY, SegSettings({"cell": (1,)}, {"model": "m"}, codes=codes,
                                                           instances="cell"), tmp_path / "seg.dcm")
    _valid(tmp_path / "seg.dcm")
    seg = hd.seg.segread(str(tmp_path / "seg.dcm"))
    assert [d.SegmentLabel for d in seg.SegmentSequence] == ["cell 1", "cell 3", "cell 7"]
    assert {d.SegmentedPropertyTypeCodeSequence[0].CodeMeaning for d in seg.SegmentSequence} == {"Cell"}
    frames = _frames_by_slice(tmp_path / "seg.dcm", paths, [1, 2, 3])
    for number, value in enumerate((1, 3, 7)):
        assert np.array_equal(frames[..., number], (objects == value).astype(np.uint8))
    with pytest.raises(UserError, match="no object found"):
        write_dicom_seg(np.zeros_like(objects), series, GEOMETRY, SegSettings({"cell": (1,)}, {"model": "m"},
                                                                              instances="cell"), tmp_path / "x.dcm")
    assert not (tmp_path / "x.dcm").exists()


def _codes(tmp_path: Path, label: str) -> Path:
    file = tmp_path / "codes.json"
    file.write_text(json.dumps({label: {"category": ["SCT", "91723000", "Anatomical Structure"],
                                        "type": ["SCT", "4421005", "Cell"]}}))
    return file
