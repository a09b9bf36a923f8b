"""DICOM series found in a folder, ordered by position, checked, and read with their geometry (issue 34, part 1)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest

from nnlight.raw.dicom import (
    ChannelRule,
    cases_by_channel_rules,
    read_dicom_case,
    read_dicom_series,
    scan_dicom,
    transfer_syntax,
    write_dicom_series,
)
from nnlight.raw.io import Geometry
from nnlight.utils.errors import UserError

UID = "1.2.826.0.1.3680043.8.498.77"


def _geometry(spacing: tuple[float, float, float] = (2.5, 0.8, 0.7), angle: float = 0.3,
              origin: tuple[float, float, float] = (-10.0, 20.0, 5.0)) -> Geometry:
    c, s = np.cos(angle), np.sin(angle)
    return Geometry(spacing=spacing, sitk_spacing=spacing[::-1], sitk_origin=origin,
                    sitk_direction=(c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0), is_2d=False)


def _volume(seed: int = 0, shape: tuple[int, int, int] = (6, 12, 10)) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1000, shape).astype(np.int16)


def test_a_series_reads_back_in_position_order_with_its_geometry_and_rescale(tmp_path: Path) -> None:
    volume, geometry = _volume(), _geometry()
    names = ["IM0003", "IM0001", "zz", "IM0000", "a.dcm", "IM0004"]  # the names say nothing about the order
    write_dicom_series(volume, geometry, tmp_path / "study" / "deep" / "er", UID, intercept=-1024, file_names=names)
    scan = scan_dicom(tmp_path)
    assert not scan.failed and not scan.skipped and len(scan.series) == 1
    series = scan.series[0]
    assert [p.name for p in series.files] == names and series.case_id.startswith("generated_1_")
    array, read = read_dicom_series(series)
    assert array.shape == (1, *volume.shape) and np.array_equal(array[0], volume)  # intercept applied
    assert read.spacing == pytest.approx(geometry.spacing, abs=1e-4)
    assert read.sitk_origin == pytest.approx(geometry.sitk_origin, abs=1e-4)
    assert read.sitk_direction == pytest.approx(geometry.sitk_direction, abs=1e-5)
    assert scan_dicom(tmp_path).series[0].case_id == series.case_id  # stable from run to run


def test_mixed_series_are_separated_and_other_files_set_aside(tmp_path: Path) -> None:
    write_dicom_series(_volume(1), _geometry(), tmp_path / "mixed", UID, description="CT abdomen", series_number=3)
    write_dicom_series(_volume(2, (4, 8, 8)), _geometry((3.0, 1.0, 1.0), 0.0), tmp_path / "mixed", UID + ".2",
                       description="CT chest", series_number=4, file_names=[f"b{k}" for k in range(4)])
    (tmp_path / "mixed" / "notes.txt").write_text("not an image")
    scan = scan_dicom(tmp_path)
    assert [s.case_id[:-9] for s in scan.series] == ["CT_abdomen_3", "CT_chest_4"]
    assert [len(s.files) for s in scan.series] == [6, 4]
    assert scan.skipped == {str(tmp_path / "mixed" / "notes.txt"): "not a DICOM image file"}


def _slice_by_slice(folder: Path, origins: list[tuple[float, float, float]], sizes: list[int] | None = None) -> None:
    """A series written one slice at a time, each at its own position (and size)."""
    for k, origin in enumerate(origins):
        size = (sizes or [12] * len(origins))[k]
        write_dicom_series(_volume(k, (1, size, 10)), _geometry(angle=0.0, origin=origin), folder, UID,
                           file_names=[f"s{k}"])


@pytest.mark.parametrize(("origins", "sizes", "message"), [
    ([(0, 0, 0), (0, 0, 2.5), (0, 0, 7.5), (0, 0, 10)], None, r"missing slices: 5 mm between slices 1 and 2"),
    ([(0, 0, 0), (0, 0, 2.5), (0, 0, 5.3), (0, 0, 7.5)], None, r"uneven slice spacing"),
    ([(0, 0, 0), (0, 0.5, 2.5), (0, 1.0, 5.0), (0, 1.5, 7.5)], None, r"a gantry tilt"),
    ([(0, 0, 0), (0, 0, 2.5), (0, 0, 2.5), (0, 0, 5.0)], None, r"two slices at the same position"),
    ([(0, 0, 0), (0, 0, 2.5), (0, 0, 5.0)], [12, 14, 12], r"slices of different sizes \(12x10, 14x10\)"),
])
def test_a_series_that_is_not_one_regular_volume_is_one_line_and_the_others_go_on(
        tmp_path: Path, origins: list[tuple[float, float, float]], sizes: list[int] | None, message: str) -> None:
    _slice_by_slice(tmp_path / "bad", origins, sizes)
    write_dicom_series(_volume(), _geometry(), tmp_path / "good", UID + ".9", description="good")
    scan = scan_dicom(tmp_path)
    assert [s.case_id[:-9] for s in scan.series] == ["good_1"]
    assert len(scan.failed) == 1
    (case, why), = scan.failed.items()
    assert case.startswith("generated_1_")
    assert re.search(message, why), why
    assert "files, e.g." in why


def test_reading_and_writing_dicom_leaves_the_process_text_encoding_alone(tmp_path: Path) -> None:
    """GDCM switches the process to the "C" locale when it writes; later text files with non-ASCII characters must
    still read."""
    import locale

    before = locale.getpreferredencoding(False)
    write_dicom_series(_volume(), _geometry(), tmp_path / "s", UID)
    read_dicom_series(scan_dicom(tmp_path / "s").series[0])
    assert locale.getpreferredencoding(False) == before


def test_generated_series_are_valid_ct_images_by_the_standard(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if not shutil.which("dciodvfy"):
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    paths = write_dicom_series(_volume(), _geometry(), tmp_path, UID, intercept=-1024)
    check = subprocess.run(["dciodvfy", str(paths[0])], capture_output=True, text=True)
    report = check.stdout + check.stderr
    assert "CTImage" in report and not [line for line in report.splitlines() if line.startswith("Error")], report


def test_a_segmentation_beside_its_series_is_set_aside_not_segmented(tmp_path: Path) -> None:
    pytest.importorskip("highdicom", reason='pip install "nnlight[dicom]"')
    from nnlight.inference.dicom_seg import SegSettings, write_dicom_seg

    write_dicom_series(_volume(), _geometry(), tmp_path / "ct", UID, description="abdomen")
    series = scan_dicom(tmp_path).series[0]
    labels = np.zeros((6, 12, 10), np.uint8)
    labels[2:4, 3:8, 2:6] = 1
    write_dicom_seg(labels, series, _geometry(), SegSettings.of_labels({"liver": 1}, "a model"),
                    tmp_path / "seg" / "liver.dcm")
    scan = scan_dicom(tmp_path)
    assert [s.case_id for s in scan.series] == [series.case_id] and not scan.failed
    (what, why), = scan.skipped.items()
    assert what.startswith("nnlight_segmentation_of_abdomen") and why == "a segmentation (SEG), not an image to segment"


def test_channel_rules_choose_one_series_per_channel_of_each_study(tmp_path: Path) -> None:
    """Two studies of a T1 and a FLAIR series (and a localizer-free extra series no rule matches): one case per
    study, its channels in the rules' order; a study where a rule matches twice, or where the channels are on
    different grids, is one line naming the series and the fix."""
    geometry = _geometry()
    t1, flair, other = _volume(1), _volume(2), _volume(3)
    for study in (1, 2):
        base = f"{UID}.{study}"  # write_dicom_series's study: the series UID without its last part, + ".1"
        write_dicom_series(t1 + study, geometry, tmp_path / f"s{study}" / "a", f"{base}.1", description="T1 MPRAGE")
        write_dicom_series(flair, geometry, tmp_path / f"s{study}" / "b", f"{base}.2", description="Ax FLAIR",
                           series_number=2)
        write_dicom_series(other, geometry, tmp_path / f"s{study}" / "c", f"{base}.3", description="DWI",
                           series_number=3)
    write_dicom_series(t1, _geometry(spacing=(3.0, 0.8, 0.7)), tmp_path / "s3" / "a", f"{UID}.3.1",
                       description="T1")
    write_dicom_series(flair, geometry, tmp_path / "s3" / "b", f"{UID}.3.2", description="FLAIR", series_number=2)
    write_dicom_series(flair, geometry, tmp_path / "s3" / "c", f"{UID}.3.3", description="FLAIR again",
                       series_number=3)
    scan = scan_dicom(tmp_path)
    rules = [ChannelRule.parse(text) for text in ("t1", "SeriesDescription=flair$")]
    cases, failed = cases_by_channel_rules(scan.series, rules)
    assert len(cases) == 2 and all(case.startswith("generated_") for case in cases)
    for channels in cases.values():
        assert [c.attribute("SeriesDescription") for c in channels] == ["T1 MPRAGE", "Ax FLAIR"]
        array, read = read_dicom_case(channels)
        study = 1 + int(channels[0].uid.split(".")[-2] == "2")
        assert array.shape == (2, *t1.shape) and np.array_equal(array[0], t1 + study)
        assert np.array_equal(array[1], flair) and np.allclose(read.sitk_spacing, (0.7, 0.8, 2.5), atol=1e-4)
    (why,) = failed.values()
    assert re.fullmatch(r"its channels \(T1_1_\w+, FLAIR_2_\w+\) are not on one grid .*; resample them onto "
                        r"the first channel's first", why)
    only_flair = cases_by_channel_rules(scan.series, [ChannelRule.parse("t1"), ChannelRule.parse("flair")])[1]
    assert re.fullmatch(r"channel 1 \('flair'\): 2 series match: FLAIR_2_\w+ \(SeriesDescription 'FLAIR'\), "
                        r"FLAIR_again_3_\w+ .*; make the rule stricter", next(iter(only_flair.values())))
    assert "no series matches; the study's series are 'Ax FLAIR', 'DWI', 'T1 MPRAGE'" in next(iter(
        cases_by_channel_rules(scan.series, [ChannelRule.parse("t2")])[1].values()))
    with pytest.raises(UserError, match=r"names Foo; a rule matches one of SeriesDescription, ProtocolName"):
        ChannelRule.parse("Foo=bar")
    with pytest.raises(UserError, match=r"'\(t1' is not a regular expression"):
        ChannelRule.parse("(t1")


@pytest.mark.parametrize("compression", ["JPEG", "JPEG2000"])
def test_a_compressed_series_reads_as_the_uncompressed_one(tmp_path: Path, compression: str) -> None:
    volume, geometry = _volume(4), _geometry()
    write_dicom_series(volume, geometry, tmp_path / "plain", UID, intercept=-1024)
    paths = write_dicom_series(volume, geometry, tmp_path / "packed", UID + ".9", intercept=-1024,
                               compression=compression)  # type: ignore[arg-type]
    assert transfer_syntax(paths[0]) == {"JPEG": "1.2.840.10008.1.2.4.70", "JPEG2000": "1.2.840.10008.1.2.4.90"}[
        compression]
    plain, packed = (read_dicom_series(scan_dicom(tmp_path / name).series[0]) for name in ("plain", "packed"))
    assert np.array_equal(plain[0], packed[0]) and plain[1] == packed[1]


PYDICOM_SYNTAXES = ("MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                    "MR_small_bigendian.dcm", "MR_small_implicit.dcm")


def test_pydicoms_own_files_in_every_transfer_syntax_read_alike_and_odd_objects_are_set_aside(tmp_path: Path
                                                                                              ) -> None:
    """pydicom's test files (installed with it, nothing downloaded): one MR slice in RLE, JPEG 2000, JPEG-LS, big
    endian and implicit VR reads as the uncompressed one; its structure set, report, segmentation and a truncated
    file beside them are set aside, each with what it is."""
    data = pytest.importorskip("pydicom.data", reason='pydicom comes with pip install "nnlight[dicom]"')
    import shutil

    shutil.copy(data.get_testdata_file("MR_small.dcm"), tmp_path / "reference")
    expected = read_dicom_series(scan_dicom(tmp_path).series[0])
    for name in PYDICOM_SYNTAXES:
        folder = tmp_path / name
        folder.mkdir()
        shutil.copy(data.get_testdata_file(name), folder / "IM1")
        array, geometry = read_dicom_series(scan_dicom(folder).series[0])
        assert np.array_equal(array, expected[0]) and geometry == expected[1], name
    odd = tmp_path / "odd"
    odd.mkdir()
    for name in ("rtstruct.dcm", "reportsi.dcm", "liver_1frame.dcm", "MR_truncated.dcm"):
        shutil.copy(data.get_testdata_file(name), odd / name)
    import pydicom

    pydicom.dcmread(odd / "rtstruct.dcm", force=True).save_as(odd / "rtstruct.dcm", enforce_file_format=True)
    scan = scan_dicom(odd)
    assert not scan.series and sorted(scan.skipped.values()) == [
        "a damaged or truncated DICOM file (it cannot be read)", "a segmentation (SEG), not an image to segment",
        "a structure set (RTSTRUCT), not an image to segment", "a structured report (SR), not an image to segment"]


def test_pixel_data_that_cannot_be_decoded_names_the_series_its_transfer_syntax_and_the_fix(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom", reason='pydicom comes with pip install "nnlight[dicom]"')
    from pydicom.data import get_testdata_file
    from pydicom.encaps import encapsulate, generate_frames

    from nnlight.raw.io import ImageReadError

    dataset = pydicom.dcmread(get_testdata_file("MR_small_jp2klossless.dcm"))
    frame = next(generate_frames(dataset.PixelData, number_of_frames=1))
    dataset.PixelData = encapsulate([bytes(len(frame))])  # no JPEG 2000 codestream in it
    dataset.save_as(tmp_path / "IM1", enforce_file_format=True)
    (series,) = scan_dicom(tmp_path).series
    with pytest.raises(ImageReadError, match=r"DICOM series MR_1_\w+: its pixel data cannot be decoded \(transfer "
                       r"syntax JPEG 2000 lossless, 1.2.840.10008.1.2.4.90: .*convert them to an uncompressed"):
        read_dicom_series(series)


def _enhanced(tmp_path: Path, volume: np.ndarray, geometry: Geometry) -> Path:
    """``volume`` as a classic series and as one enhanced multi-frame image (highdicom's legacy conversion)."""
    import highdicom as hd
    import pydicom

    paths = write_dicom_series(volume, geometry, tmp_path / "classic", UID + ".30", intercept=-1024)
    image = hd.legacy.LegacyConvertedEnhancedCTImage(
        [pydicom.dcmread(str(p)) for p in paths], series_instance_uid=UID + ".31", series_number=31,
        sop_instance_uid=UID + ".31.1", instance_number=1)
    (tmp_path / "enhanced").mkdir()
    image.save_as(tmp_path / "enhanced" / "IM1")
    return tmp_path / "enhanced" / "IM1"


def test_an_enhanced_multi_frame_image_reads_as_its_classic_series(tmp_path: Path) -> None:
    pytest.importorskip("highdicom", reason='pip install "nnlight[dicom]"')
    volume, geometry = _volume(5), _geometry()
    _enhanced(tmp_path, volume, geometry)
    classic, enhanced = (scan_dicom(tmp_path / name) for name in ("classic", "enhanced"))
    (series,) = enhanced.series
    assert series.multiframe and not enhanced.failed
    expected, expected_geometry = read_dicom_series(classic.series[0])
    array, read = read_dicom_series(series)
    assert np.array_equal(array, expected)
    assert np.allclose(read.sitk_origin, expected_geometry.sitk_origin, atol=1e-4)
    assert np.allclose(read.sitk_direction, expected_geometry.sitk_direction, atol=1e-5)
    assert np.allclose(read.sitk_spacing, expected_geometry.sitk_spacing, atol=1e-4)


def test_series_made_from_the_shared_ct_and_mr_read_back_as_their_nifti_files(tmp_path: Path) -> None:
    """Real geometry: the shared CT (3 mm, int16) and a BraTS MR case (two channels, z-scores kept to 0.01 as
    int16) written as DICOM series read back as the NIfTI files hold them; the MR's channels by their rules."""
    from nnlight.raw.io import read_image_file
    from tests.conftest import shared_dataset

    ct_file = shared_dataset("Dataset102_TotalSegCTExample") / "imagesTr" / "tsct_small_0000.nii.gz"
    ct, ct_geometry = read_image_file(ct_file)
    write_dicom_series(ct[0].astype(np.int16), ct_geometry, tmp_path / "ct", UID + ".40", description="CT abdomen")
    (series,) = scan_dicom(tmp_path / "ct").series
    array, geometry = read_dicom_series(series)
    assert np.array_equal(array, ct.astype(np.int16))
    for ours, theirs in ((geometry.sitk_origin, ct_geometry.sitk_origin),
                         (geometry.sitk_spacing, ct_geometry.sitk_spacing),
                         (geometry.sitk_direction, ct_geometry.sitk_direction)):
        assert np.allclose(ours, theirs, atol=1e-4)

    brats = shared_dataset("Dataset101_BraTS2015Mini") / "imagesTr"
    channels = [read_image_file(brats / f"brats2013_pat0001_000{c}.nii.gz") for c in (0, 1)]
    scaled = [np.round(image[0] * 100).astype(np.int16) for image, _ in channels]
    for k, (name, volume) in enumerate(zip(("Ax T1c post-contrast", "Ax FLAIR"), scaled, strict=True)):
        write_dicom_series(volume, channels[0][1], tmp_path / "mr" / name, f"{UID}.5.{k + 10}", description=name,
                           series_number=k + 1, patient_id="BRATS0001")
    cases, failed = cases_by_channel_rules(scan_dicom(tmp_path / "mr").series,
                                           [ChannelRule.parse("t1c"), ChannelRule.parse("flair")])
    assert not failed and next(iter(cases)).startswith("BRATS0001_")
    array, geometry = read_dicom_case(next(iter(cases.values())))
    assert np.array_equal(array, np.stack(scaled))
    assert np.allclose(geometry.sitk_origin, channels[0][1].sitk_origin, atol=1e-4)
    assert np.allclose(geometry.sitk_direction, channels[0][1].sitk_direction, atol=1e-5)


def test_a_jpeg_baseline_series_decodes_close_to_its_source(tmp_path: Path) -> None:
    """JPEG baseline (lossy, 8 bits): the compression archives use for secondary captures and older CTs; its
    slices are made here with Pillow (highdicom's dependency) and decoded by GDCM."""
    pydicom = pytest.importorskip("pydicom", reason='pydicom comes with pip install "nnlight[dicom]"')
    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    z, y, x = np.mgrid[0:5, 0:32, 0:24]
    volume = (100 + 60 * np.sin(y / 5.0) * np.cos(x / 4.0) + 10 * z).astype(np.int16)  # smooth, 8-bit values
    plain = write_dicom_series(volume, _geometry(), tmp_path / "plain", UID + ".50")
    (tmp_path / "jpeg").mkdir()
    for path in plain:
        dataset = pydicom.dcmread(path)
        encoded = io.BytesIO()
        Image.fromarray(dataset.pixel_array.astype(np.uint8)).save(encoded, "JPEG", quality=90)
        dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 8, 8, 7, 0
        dataset.PixelData = encapsulate([encoded.getvalue()])
        dataset["PixelData"].VR = "OB"
        dataset.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        dataset.save_as(tmp_path / "jpeg" / path.name, enforce_file_format=True)
    (series,) = scan_dicom(tmp_path / "jpeg").series
    assert transfer_syntax(series.files[0]) == "1.2.840.10008.1.2.4.50"
    array, geometry = read_dicom_series(series)
    assert np.abs(array[0].astype(float) - volume).mean() < 2.0 and geometry.sitk_spacing == (0.7, 0.8, 2.5)
