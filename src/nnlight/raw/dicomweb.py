"""A study on a DICOMweb server (a PACS): read for prediction, its segmentations stored back (issue 34, item 5).

``nnlight-predict input=<server>/studies/<StudyInstanceUID>`` finds the study's image series (QIDO-RS), downloads
their instances into the output folder (WADO-RS; a series at a time, each file written atomically, a finished
series marked, so an interrupted download goes on where it stopped) and predicts them as a DICOM folder; each
DICOM SEG written is stored on the same server (STOW-RS). The address goes on the command line, the credentials
never do: they come from the environment (``NNLIGHT_DICOMWEB_TOKEN``, or ``NNLIGHT_DICOMWEB_USER`` and
``NNLIGHT_DICOMWEB_PASSWORD``) or from a JSON file (``dicomweb_credentials=<file>``: ``{"user": .., "password": ..}``
or ``{"token": ..}``). Talking DICOMweb is dicomweb-client's job (the DICOMweb client of the highdicom team).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nnlight.utils.errors import UserError
from nnlight.utils.files import atomic_write_named

# series that hold no image to segment: not downloaded (a SEG of an earlier run, reports, structure sets, ...)
NOT_IMAGE_MODALITIES = {"SEG", "RTSTRUCT", "SR", "KO", "PR", "RTPLAN", "RTDOSE", "RWV", "REG", "DOC"}
ENVIRONMENT = ("NNLIGHT_DICOMWEB_TOKEN", "NNLIGHT_DICOMWEB_USER", "NNLIGHT_DICOMWEB_PASSWORD")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


@dataclass(frozen=True)
class StudyAddress:
    """``<server>/studies/<uid>``: the server's DICOMweb root and the study's UID."""

    server: str
    study_uid: str

    def __str__(self) -> str:
        return f"{self.server}/studies/{self.study_uid}"


def _save(dataset: Any, path: Path) -> None:
    dataset.save_as(str(path), enforce_file_format=True)


def is_web_address(text: str) -> bool:
    return text.startswith(("http://", "https://"))


def study_address(text: str) -> StudyAddress:
    """The study a DICOMweb address names; credentials in it are refused (they would stay in logs and configs)."""
    parts = urlsplit(text)
    if parts.username or parts.password:
        raise UserError(f"input={parts.scheme}://...@{parts.hostname}: credentials do not go on the command line "
                        "(they would be kept in the run's logs and saved config); set NNLIGHT_DICOMWEB_USER and "
                        "NNLIGHT_DICOMWEB_PASSWORD (or NNLIGHT_DICOMWEB_TOKEN), or give dicomweb_credentials=<file>")
    match = re.fullmatch(r"(?P<server>.+?)/studies/(?P<uid>[^/?#]+)/?", text.split("?")[0])
    if match is None or not _UID.match(match["uid"]):
        raise UserError(f"input={text}: a DICOMweb input is one study's address, <server's DICOMweb root>/studies/"
                        "<StudyInstanceUID>, e.g. http://pacs:8042/dicom-web/studies/1.2.840.113619.2.55.3")
    return StudyAddress(match["server"], match["uid"])


def _credentials(file: Path | None) -> dict[str, str]:
    if file is not None:
        try:
            values = json.loads(file.read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"dicomweb_credentials={file}: cannot be read as JSON ({e}); write "
                            '{"user": "...", "password": "..."} or {"token": "..."} into it') from None
        if not isinstance(values, dict) or not ({"user", "password"} <= values.keys() or "token" in values):
            raise UserError(f'dicomweb_credentials={file}: give {{"user": "...", "password": "..."}} or '
                            '{"token": "..."}')
        return {k: str(v) for k, v in values.items() if k in ("user", "password", "token")}
    token, user, password = (os.environ.get(name) for name in ENVIRONMENT)
    if token:
        return {"token": token}
    if user or password:
        if not (user and password):
            raise UserError("NNLIGHT_DICOMWEB_USER and NNLIGHT_DICOMWEB_PASSWORD go together: set both (or neither)")
        return {"user": user, "password": password}
    return {}


class DicomwebStudy:
    """One study on a DICOMweb server, with the session that reads and writes it. A request that fails for the
    network or a busy server is tried ``attempts`` times, with exponential back-off (1, 2, 4, ... s)."""

    def __init__(self, address: StudyAddress, credentials_file: Path | None = None, attempts: int = 5) -> None:
        try:
            import requests
            from dicomweb_client import DICOMwebClient
        except ImportError:
            raise UserError('a DICOMweb input needs dicomweb-client: pip install "nnlight[dicom]"') from None
        self.address = address
        session = requests.Session()
        credentials = _credentials(credentials_file)
        if "token" in credentials:
            session.headers["Authorization"] = f"Bearer {credentials['token']}"
        elif credentials:
            session.auth = (credentials["user"], credentials["password"])
        self._client = DICOMwebClient(url=address.server, session=session)
        self._client.set_http_retry_params(max_attempts=attempts)

    def _call(self, what: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        """``call`` with the server's errors as one line naming the server and what to check."""
        import requests

        try:
            return call(*args, **kwargs)
        except requests.HTTPError as e:
            status = e.response.status_code if e.response is not None else "?"
            hint = {401: "check NNLIGHT_DICOMWEB_USER/PASSWORD, NNLIGHT_DICOMWEB_TOKEN or dicomweb_credentials",
                    403: "these credentials may not do this on the server", 404: "check the address and the UID"}
            raise UserError(f"DICOMweb {self.address.server}: {what} failed (HTTP {status}); "
                            f"{hint.get(status, 'see the server log')}" if isinstance(status, int) else
                            f"DICOMweb {self.address.server}: {what} failed ({e})") from None
        except requests.RequestException as e:
            raise UserError(f"DICOMweb {self.address.server}: {what} failed: the server cannot be reached "
                            f"({type(e).__name__}); check the address and that the server runs") from None

    def image_series(self) -> tuple[list[str], dict[str, str]]:
        """The study's series that may hold images, and the others (series UID -> why set aside)."""
        found = self._call(f"searching study {self.address.study_uid}", self._client.search_for_series,
                           self.address.study_uid, get_remaining=True)
        if not found:
            raise UserError(f"DICOMweb {self.address}: the server holds no series of this study; check its UID")
        images, others = [], {}
        for series in found:
            uid = series["0020000E"]["Value"][0]
            modality = (series.get("00080060", {}).get("Value") or [""])[0]
            if modality in NOT_IMAGE_MODALITIES:
                others[uid] = f"a {modality} series, not an image to segment"
            else:
                images.append(uid)
        return images, others

    def download(self, folder: Path) -> dict[str, str]:
        """The study's image series into ``folder/<series UID>/<SOP instance UID>.dcm``; a series finished before
        is not downloaded again. Returns the series set aside without downloading."""
        images, others = self.image_series()
        for uid in images:
            target = folder / uid
            if (target / ".complete").is_file():
                continue
            target.mkdir(parents=True, exist_ok=True)
            for instance in self._instances(uid):
                if _UID.match(str(instance.SOPInstanceUID)) is None:  # it names the file
                    raise UserError(f"DICOMweb {self.address}: series {uid} sent an instance without a valid "
                                    "SOPInstanceUID")
                atomic_write_named(target / f"{instance.SOPInstanceUID}.dcm", partial(_save, instance))
            (target / ".complete").write_text("")
        return others

    def _instances(self, series_uid: str) -> list[Any]:
        return self._call(f"reading series {series_uid}", lambda: list(
            self._client.iter_series(self.address.study_uid, series_uid)))

    def store(self, paths: list[Path]) -> None:
        """Store these DICOM files (SEGs) in the study on the server."""
        import pydicom

        for path in paths:
            self._call(f"storing {path.name}", self._client.store_instances, [pydicom.dcmread(str(path))],
                       self.address.study_uid)

    def series_of_modality(self, modality: str) -> list[str]:
        """The UIDs of the study's series of ``modality`` (e.g. the SEGs stored back)."""
        found = self._call(f"searching study {self.address.study_uid}", self._client.search_for_series,
                           self.address.study_uid, search_filters={"Modality": modality}, get_remaining=True)
        return [series["0020000E"]["Value"][0] for series in found or []]
