"""A study on a DICOMweb server (issue 34, item 5): its address, the credentials kept off the command line, and a
download and store against a real Orthanc that the tests start on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nnlight.raw.dicom import scan_dicom, write_dicom_series
from nnlight.raw.dicomweb import DicomwebStudy, StudyAddress, _credentials, study_address
from nnlight.raw.io import Geometry
from nnlight.utils.errors import UserError
from tests.conftest import ORTHANC_USER, Orthanc

UID = "1.2.826.0.1.3680043.8.498.5151"
GEOMETRY = Geometry(spacing=(3.0, 0.9, 0.9), sitk_spacing=(0.9, 0.9, 3.0), sitk_origin=(-20.0, 10.0, 4.0),
                    sitk_direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0), is_2d=False)


def test_a_study_address_is_the_server_and_the_uid_and_credentials_in_it_are_refused() -> None:
    assert study_address("http://pacs:8042/dicom-web/studies/1.2.3/") == StudyAddress("http://pacs:8042/dicom-web",
                                                                                     "1.2.3")
    with pytest.raises(UserError, match="credentials do not go on the command line"):
        study_address("https://me:secret@pacs/dicom-web/studies/1.2.3")
    with pytest.raises(UserError, match=r"one study's address, <server's DICOMweb root>/studies/"):
        study_address("http://pacs:8042/dicom-web/series/1.2.3")


def test_credentials_come_from_the_environment_or_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NNLIGHT_DICOMWEB_TOKEN", "NNLIGHT_DICOMWEB_USER", "NNLIGHT_DICOMWEB_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert _credentials(None) == {}
    monkeypatch.setenv("NNLIGHT_DICOMWEB_USER", "radiology")
    with pytest.raises(UserError, match="go together: set both"):
        _credentials(None)
    monkeypatch.setenv("NNLIGHT_DICOMWEB_PASSWORD", "pw")
    assert _credentials(None) == {"user": "radiology", "password": "pw"}
    monkeypatch.setenv("NNLIGHT_DICOMWEB_TOKEN", "abc")
    assert _credentials(None) == {"token": "abc"}
    file = tmp_path / "pacs.json"
    file.write_text(json.dumps({"user": "u"}))
    with pytest.raises(UserError, match=r"dicomweb_credentials=.*pacs.json: give"):
        _credentials(file)
    file.write_text(json.dumps({"user": "u", "password": "p"}))
    assert _credentials(file) == {"user": "u", "password": "p"}


def _upload(orthanc: Orthanc, folder: Path, study_uid: str) -> None:
    """The files under ``folder`` stored in the server by STOW-RS, as a scanner or a PACS import would."""
    import pydicom
    from dicomweb_client import DICOMwebClient
    from dicomweb_client.session_utils import create_session_from_user_pass

    client = DICOMwebClient(orthanc.dicomweb, session=create_session_from_user_pass(*ORTHANC_USER))
    client.store_instances([pydicom.dcmread(str(p)) for p in sorted(folder.rglob("*.dcm"))], study_uid)


def test_a_study_is_downloaded_once_and_a_file_stored_back_is_found(orthanc: Orthanc, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    volume = np.random.default_rng(1).integers(-500, 500, (5, 8, 6)).astype(np.int16)
    write_dicom_series(volume, GEOMETRY, tmp_path / "scanner" / "a", UID + ".10", description="chest")
    write_dicom_series(volume[:3], GEOMETRY, tmp_path / "scanner" / "b", UID + ".11", description="head",
                       series_number=2)
    study_uid = UID + ".1"  # write_dicom_series's study for both
    _upload(orthanc, tmp_path / "scanner", study_uid)
    address = study_address(f"{orthanc.dicomweb}/studies/{study_uid}")

    monkeypatch.delenv("NNLIGHT_DICOMWEB_TOKEN", raising=False)
    monkeypatch.setenv("NNLIGHT_DICOMWEB_USER", ORTHANC_USER[0])
    monkeypatch.setenv("NNLIGHT_DICOMWEB_PASSWORD", "wrong")
    with pytest.raises(UserError, match=r"searching study .* failed \(HTTP 401\); check NNLIGHT_DICOMWEB_USER"):
        DicomwebStudy(address).download(tmp_path / "download")
    monkeypatch.setenv("NNLIGHT_DICOMWEB_PASSWORD", ORTHANC_USER[1])
    study = DicomwebStudy(address)
    assert study.download(tmp_path / "download") == {}
    scan = scan_dicom(tmp_path / "download")
    assert [s.case_id[:7] for s in scan.series] == ["chest_1", "head_2_"] and not scan.failed
    assert [len(s.files) for s in scan.series] == [5, 3]
    marked = tmp_path / "download" / (UID + ".11") / ".complete"
    assert marked.is_file()
    (marked.parent / f"{UID}.11.1.dcm").unlink()  # finished before: not downloaded again
    study.download(tmp_path / "download")
    assert len(list(marked.parent.glob("*.dcm"))) == 2

    with pytest.raises(UserError, match=r"DICOMweb http://127.0.0.1:1/dicom-web: searching .* cannot be reached"):
        DicomwebStudy(StudyAddress("http://127.0.0.1:1/dicom-web", study_uid), attempts=1).image_series()
