"""DICOM image series: found in a folder at any depth, checked, and read as a case (issue 34, first part).

A folder from a scanner or an archive holds files with meaningless names, several series mixed, and objects that
are not images. :func:`scan_dicom` reads every file's header once (SimpleITK's GDCM reader, no pixel data) and
groups the image slices by series (``SeriesInstanceUID``); segmentations, structure sets, reports, presentation
states, key-object selections and localizer (scout) images are set aside with the reason. Each series is ordered by
its slices' position along the normal of their plane: never by file name: and refused, one line naming it and
the fix, when it cannot be one regular volume: slices of different sizes or orientations, a non-orthogonal
orientation, duplicate positions, missing slices, uneven spacing, a gantry tilt. :func:`read_dicom_series` then
reads a good series (rescale slope and intercept applied, geometry from the positions, orientation and pixel
spacing) in nnlight's layout and :class:`~nnlight.raw.io.Geometry`.
"""

from __future__ import annotations

import contextlib
import hashlib
import locale
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import SimpleITK as sitk

from nnlight.raw.io import Geometry, ImageReadError
from nnlight.utils.errors import UserError

# SOP classes that hold no image to segment: (class UID or its prefix, what it is)
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
NOT_IMAGES = ((SEGMENTATION_STORAGE, "a segmentation (SEG)"),
              (RTSTRUCT_STORAGE, "a structure set (RTSTRUCT)"),
              ("1.2.840.10008.5.1.4.1.1.88.59", "a key object selection (KO)"),
              ("1.2.840.10008.5.1.4.1.1.88.", "a structured report (SR)"),
              ("1.2.840.10008.5.1.4.1.1.11.", "a presentation state (PR)"),
              ("1.2.840.10008.5.1.4.1.1.66", "a raw data or registration object"))
TAGS = {"series": "0020|000e", "sop_class": "0008|0016", "position": "0020|0032", "orientation": "0020|0037",
        "pixel_spacing": "0028|0030", "rows": "0028|0010", "columns": "0028|0011", "description": "0008|103e",
        "number": "0020|0011", "modality": "0008|0060", "image_type": "0008|0008", "thickness": "0018|0050",
        "study": "0020|000d", "patient": "0010|0020", "instance": "0008|0018", "protocol": "0018|1030",
        "sequence": "0018|0024", "frames": "0028|0008"}
# what a channel rule may match (DICOM keyword -> the header's name above)
RULE_ATTRIBUTES = {"SeriesDescription": "description", "ProtocolName": "protocol", "SequenceName": "sequence",
                   "Modality": "modality", "SeriesNumber": "number", "ImageType": "image_type"}
ORIENTATION_TOLERANCE = 1e-4  # direction cosines that differ less are the same orientation
SPACING_TOLERANCE = 0.01  # relative: slice distances within 1 % of their median are even
GAP_FACTOR = 1.5  # a distance this many times the median is a missing slice


@dataclass(frozen=True)
class _Slice:
    path: Path
    instance_uid: str
    position: tuple[float, float, float]
    orientation: tuple[float, ...]
    size: tuple[int, int]
    pixel_spacing: tuple[float, float]  # (row spacing: between rows, y; column spacing: x)


@dataclass(frozen=True)
class DicomSeries:
    """A series that reads as one regular volume: its files in order along the slice normal."""

    uid: str
    case_id: str  # readable and stable: <description or modality>_<series number>_<8 hex of the UID>
    files: tuple[Path, ...]
    slice_spacing: float
    study_uid: str = ""
    patient_id: str = ""
    attributes: tuple[tuple[str, str], ...] = ()  # (RULE_ATTRIBUTES keyword, value): what channel rules match
    grid: tuple[float, ...] = ()  # rows, columns, slices, first position, orientation, spacings: channels share it
    instance_uids: tuple[str, ...] = ()  # SOPInstanceUID of each file, in slice order (a SEG's frames name them)
    multiframe: bool = False  # one enhanced (multi-frame) image: its frames are the slices

    def attribute(self, keyword: str) -> str:
        return dict(self.attributes)[keyword]


@dataclass
class DicomScan:
    series: list[DicomSeries] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # series (or file) -> why it is not an image to segment
    failed: dict[str, str] = field(default_factory=dict)  # case id -> why the series cannot be read as a volume
    segmentations: list[Path] = field(default_factory=list)  # DICOM SEG files (a collection's labels)
    structure_sets: list[Path] = field(default_factory=list)  # RTSTRUCT files


@contextlib.contextmanager
def _keeping_locale() -> Iterator[None]:
    """GDCM sets the process's locale to "C" when it writes: Python's default text encoding would become ASCII for
    the rest of the process (every later ``open()`` of a file with a non-ASCII character fails). Restored after."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _numbers(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.strip().split("\\") if v.strip())


def _readable(text: str, otherwise: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:40] or otherwise


def _short_hash(uid: str) -> str:
    return hashlib.sha1(uid.encode()).hexdigest()[:8]


def _case_id(uid: str, description: str, number: str, modality: str) -> str:
    number = re.sub(r"[^0-9]", "", number) or "0"
    return f"{_readable(description or modality, 'series')}_{number}_{_short_hash(uid)}"


def _header(path: Path) -> dict[str, str] | None:
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(str(path))
    reader.LoadPrivateTagsOff()
    try:
        with _keeping_locale():
            reader.ReadImageInformation()
    except RuntimeError:  # no image in it (a report, a structure set), or damaged
        return _header_without_image(path) if _marked(path) else None
    return {name: reader.GetMetaData(tag).strip() if reader.HasMetaDataKey(tag) else ""
            for name, tag in TAGS.items()}


def _header_without_image(path: Path) -> dict[str, str] | None:
    """The header of a DICOM object that SimpleITK's image reader refuses for holding no image (a report, a
    structure set), read by pydicom (the dicom extra's) where installed; None for an image it refuses (damaged)."""
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
    except ImportError:
        return None
    try:
        dataset = pydicom.dcmread(str(path), stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return None
    values = {}
    for name, tag in TAGS.items():
        element = dataset.get(int(tag.replace("|", ""), 16))
        value = "" if element is None or element.value is None else element.value
        values[name] = "\\".join(map(str, value)) if isinstance(value, list | tuple) or \
            type(value).__name__ == "MultiValue" else str(value)
    not_an_image = any(values["sop_class"].startswith(prefix) for prefix, _ in NOT_IMAGES)
    return values if values["series"] and not_an_image else None  # an image SimpleITK cannot read is damaged


def _marked(path: Path) -> bool:
    """Whether ``path`` starts as a DICOM file does (the "DICM" mark after its 128-byte preamble)."""
    with contextlib.suppress(OSError), path.open("rb") as f:
        return f.read(132)[128:] == b"DICM"
    return False


def holds_dicom(folder: Path) -> bool:
    """Whether any file under ``folder`` is a DICOM file."""
    return any(_marked(path) for path in folder.rglob("*") if path.is_file())


def scan_dicom(folder: Path) -> DicomScan:
    """Every image series under ``folder`` (any depth, any file names), checked; what is not one, set aside."""
    groups: dict[str, list[tuple[Path, dict[str, str]]]] = {}
    scan = DicomScan()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        header = _header(path)
        if header is None or not header["series"]:
            scan.skipped[str(path)] = "a damaged or truncated DICOM file (it cannot be read)" if _marked(path) else \
                "not a DICOM image file"
            continue
        groups.setdefault(header["series"], []).append((path, header))
    for uid, members in groups.items():
        first = members[0][1]
        case_id = _case_id(uid, first["description"], first["number"], first["modality"])
        kind = next((what for prefix, what in NOT_IMAGES if first["sop_class"].startswith(prefix)), None)
        scan.segmentations += [path for path, header in members if header["sop_class"] == SEGMENTATION_STORAGE]
        scan.structure_sets += [path for path, header in members if header["sop_class"] == RTSTRUCT_STORAGE]
        if kind is not None:
            scan.skipped[case_id] = f"{kind}, not an image to segment"
        elif "LOCALIZER" in first["image_type"].upper():
            scan.skipped[case_id] = "a localizer (scout) image"
        else:
            try:
                multiframe = any(int(header["frames"] or 1) > 1 for _, header in members)
                scan.series.append((_multiframe_series if multiframe else _checked_series)(uid, case_id, members))
            except ValueError as e:
                scan.failed[case_id] = f"{e} ({len(members)} files, e.g. {members[0][0]})"
    scan.series.sort(key=lambda s: s.case_id)
    return scan


def _checked_series(uid: str, case_id: str, members: list[tuple[Path, dict[str, str]]]) -> DicomSeries:
    slices = []
    for path, header in members:
        position, orientation = _numbers(header["position"]), _numbers(header["orientation"])
        spacing = _numbers(header["pixel_spacing"])
        if len(position) != 3 or len(orientation) != 6 or len(spacing) != 2:
            raise ValueError("a slice without position, orientation or pixel spacing (ImagePositionPatient, "
                             "ImageOrientationPatient, PixelSpacing); export the series again with them")
        slices.append(_Slice(path, header["instance"], (position[0], position[1], position[2]), orientation,
                             (int(header["rows"] or 0), int(header["columns"] or 0)), (spacing[0], spacing[1])))
    sizes = sorted({f"{rows}x{columns}" for rows, columns in (s.size for s in slices)})
    if len(sizes) > 1:
        raise ValueError(f"slices of different sizes ({', '.join(sizes)}): several images in one series; split it "
                         "or export each image as its own series")
    row, column = np.array(slices[0].orientation[:3]), np.array(slices[0].orientation[3:])
    if any(np.abs(np.array(s.orientation) - slices[0].orientation).max() > ORIENTATION_TOLERANCE for s in slices):
        raise ValueError("slices in different orientations; a series must be one stack of parallel slices")
    if abs(float(row @ column)) > 1e-3:
        raise ValueError("a non-orthogonal orientation (its row and column directions are not at right angles); "
                         "resample the series on the scanner or with a DICOM tool first")
    normal = np.cross(row, column)
    normal /= np.linalg.norm(normal)  # the cosines come rounded from the files
    slices.sort(key=lambda s: float(np.array(s.position) @ normal))
    if len(slices) == 1:
        return _series(uid, case_id, slices, 1.0, members[0][1])
    positions = np.array([s.position for s in slices])
    along = positions @ normal
    distances = np.diff(along)
    median = float(np.median(distances))
    if median <= 0 or distances.min() < 1e-3 * max(median, 1e-6):
        raise ValueError("two slices at the same position (a duplicated or repeated acquisition); keep one of them")
    if distances.max() > GAP_FACTOR * median:
        where = int(np.argmax(distances))
        raise ValueError(f"missing slices: {distances.max():.3g} mm between slices {where} and {where + 1} where "
                         f"the others are {median:.3g} mm apart; export the complete series")
    if (distances.max() - distances.min()) > SPACING_TOLERANCE * median:
        raise ValueError(f"uneven slice spacing ({distances.min():.3g} to {distances.max():.3g} mm); resample it to "
                         "an even spacing first")
    span = positions[-1] - positions[0]
    sideways = span - (span @ normal) * normal
    if float(np.linalg.norm(sideways)) > 1e-2 * max(float(abs(span @ normal)), 1e-6):
        raise ValueError("a gantry tilt (its slices are shifted sideways from one to the next); correct the tilt "
                         "on the scanner's workstation or with a DICOM tool first")
    return _series(uid, case_id, slices, median, members[0][1])


def _series(uid: str, case_id: str, slices: list[_Slice], slice_spacing: float, header: dict[str, str]
            ) -> DicomSeries:
    first = slices[0]
    grid = (*first.size, len(slices), *first.position, *first.orientation, *first.pixel_spacing, slice_spacing)
    return DicomSeries(uid, case_id, tuple(s.path for s in slices), slice_spacing, header["study"],
                       header["patient"], tuple((k, header[name]) for k, name in RULE_ATTRIBUTES.items()), grid,
                       tuple(s.instance_uid for s in slices))


def highdicom_module(needed_for: str) -> Any:
    """highdicom (the dicom extra), or an error saying what needs it and how to install it."""
    try:
        import highdicom
    except ImportError:
        raise UserError(f'{needed_for} needs highdicom: pip install "nnlight[dicom]"') from None
    return highdicom


def _multiframe_series(uid: str, case_id: str, members: list[tuple[Path, dict[str, str]]]) -> DicomSeries:
    """An enhanced (multi-frame) image as a series: its frames must be one regular stack (highdicom checks the
    per-frame positions: no gaps, even spacing, one orientation)."""
    if len(members) > 1:
        raise ValueError(f"{len(members)} multi-frame images in one series; nnlight reads a series of one multi-frame "
                         "image or of single-frame slices: export each image as its own series")
    path, header = members[0]
    try:
        image = highdicom_module("an enhanced (multi-frame) DICOM image").imread(str(path),
                                                                                 lazy_frame_retrieval=True)
        geometry = image.get_volume_geometry()
    except UserError as e:
        raise ValueError(str(e)) from None
    except (ValueError, RuntimeError, AttributeError, KeyError) as e:
        raise ValueError(f"its frames cannot be placed in space ({e}); export the image again with its frame "
                         "positions") from None
    if geometry is None:
        raise ValueError("its frames are not one regular stack of slices (missing frames, uneven spacing, several "
                         "orientations or stacks); export one regular volume")
    grid = (*geometry.spatial_shape[1:], geometry.spatial_shape[0], *np.ravel(geometry.position),
            *np.ravel(geometry.direction), *geometry.spacing)
    return DicomSeries(uid, case_id, (path,), float(geometry.spacing_between_slices), header["study"],
                       header["patient"], tuple((k, header[name]) for k, name in RULE_ATTRIBUTES.items()),
                       tuple(float(v) for v in grid), (header["instance"],), multiframe=True)


def _read_multiframe(series: DicomSeries) -> tuple[np.ndarray, Geometry]:
    """A multi-frame image's frames as a volume in the layout of a classic series: slices ascending along the
    normal of their rows and columns (highdicom may stack them the other way), values rescaled."""
    volume = highdicom_module("an enhanced (multi-frame) DICOM image").imread(str(series.files[0])).get_volume(
        dtype=np.float32)
    array, direction = volume.array, np.array(volume.direction, dtype=float)  # columns: slice, row, column axes
    position, spacing = np.array(volume.position, dtype=float), tuple(float(v) for v in volume.spacing)
    if float(direction[:, 0] @ np.cross(direction[:, 2], direction[:, 1])) < 0:
        position = position + (array.shape[0] - 1) * spacing[0] * direction[:, 0]
        array, direction[:, 0] = array[::-1], -direction[:, 0]
    axes = direction[:, ::-1]  # SimpleITK's x (columns), y (rows), z (slices)
    return np.ascontiguousarray(array)[None], Geometry(
        spacing=spacing, sitk_spacing=spacing[::-1], sitk_origin=tuple(float(v) for v in position),
        sitk_direction=tuple(float(v) for v in axes.ravel()), is_2d=False)


TRANSFER_SYNTAXES = {"1.2.840.10008.1.2": "implicit VR little endian", "1.2.840.10008.1.2.1": "explicit VR little "
                     "endian", "1.2.840.10008.1.2.2": "explicit VR big endian", "1.2.840.10008.1.2.5": "RLE",
                     "1.2.840.10008.1.2.4.50": "JPEG baseline", "1.2.840.10008.1.2.4.51": "JPEG extended",
                     "1.2.840.10008.1.2.4.57": "JPEG lossless", "1.2.840.10008.1.2.4.70": "JPEG lossless SV1",
                     "1.2.840.10008.1.2.4.80": "JPEG-LS lossless", "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless",
                     "1.2.840.10008.1.2.4.90": "JPEG 2000 lossless", "1.2.840.10008.1.2.4.91": "JPEG 2000",
                     "1.2.840.10008.1.2.4.201": "HTJ2K lossless", "1.2.840.10008.1.2.4.203": "HTJ2K",
                     "1.2.840.10008.1.2.4.110": "JPEG XL lossless", "1.2.840.10008.1.2.4.112": "JPEG XL"}


def transfer_syntax(path: Path) -> str:
    """The file's transfer syntax UID (its file meta group, always explicit VR little endian), '' if unknown."""
    with contextlib.suppress(OSError), path.open("rb") as f:
        meta = f.read(4096)
        offset = 132
        while offset + 8 <= len(meta) and meta[offset:offset + 2] == b"\x02\x00":
            element, vr = int.from_bytes(meta[offset + 2:offset + 4], "little"), meta[offset + 4:offset + 6]
            if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
                length, start = int.from_bytes(meta[offset + 8:offset + 12], "little"), offset + 12
            else:
                length, start = int.from_bytes(meta[offset + 6:offset + 8], "little"), offset + 8
            if element == 0x0010:
                return meta[start:start + length].decode("ascii", "replace").strip("\x00 ")
            offset = start + length
    return ""


def read_dicom_series(series: DicomSeries) -> tuple[np.ndarray, Geometry]:
    """The series as a ``(1, z, y, x)`` array of stored values with rescale slope and intercept applied, and its
    geometry (origin: the first slice's position; directions: its rows, columns and their normal)."""
    if series.multiframe:
        return _read_multiframe(series)
    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileNames([str(p) for p in series.files])
    try:
        with _keeping_locale():
            image = reader.Execute()
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else "unreadable"
        syntax = transfer_syntax(series.files[0])
        raise ImageReadError(f"DICOM series {series.case_id}: its pixel data cannot be decoded (transfer syntax "
                             f"{TRANSFER_SYNTAXES.get(syntax, 'unknown')}, {syntax or 'not stated'}: {reason}); the "
                             "files may be damaged, or convert them to an uncompressed transfer syntax (e.g. "
                             "gdcmconv --raw, or dcmdjpeg of DCMTK)") from None
    spacing = (*(float(s) for s in image.GetSpacing()[:2]), series.slice_spacing)  # along the normal, as checked
    image.SetSpacing(spacing)
    array = sitk.GetArrayFromImage(image)
    array = array if array.ndim == 3 else array[None]
    return array[None], Geometry(spacing=spacing[::-1], sitk_spacing=spacing,
                                 sitk_origin=tuple(float(o) for o in image.GetOrigin()),
                                 sitk_direction=tuple(float(d) for d in image.GetDirection()), is_2d=False)


@dataclass(frozen=True)
class ChannelRule:
    """Which series of a study is one channel of a case: ``pattern`` (a regular expression, case-insensitive)
    found in the series' ``keyword`` attribute. Written ``<pattern>`` (on SeriesDescription) or
    ``<keyword>=<pattern>``, e.g. ``flair`` or ``SequenceName=tse``."""

    text: str
    keyword: str
    pattern: re.Pattern[str]

    @classmethod
    def parse(cls, text: str) -> ChannelRule:
        keyword, _, pattern = text.partition("=") if re.match(r"^[A-Za-z]+=", text) else ("", "", text)
        keyword = keyword or "SeriesDescription"
        if keyword not in RULE_ATTRIBUTES:
            raise UserError(f"dicom_channels: {text!r} names {keyword}; a rule matches one of "
                            f"{', '.join(RULE_ATTRIBUTES)} (<Keyword>=<pattern>), or SeriesDescription when it "
                            "names none")
        try:
            return cls(text, keyword, re.compile(pattern, re.IGNORECASE))
        except re.error as e:
            raise UserError(f"dicom_channels: {text!r} is not a regular expression ({e})") from None

    def matches(self, series: DicomSeries) -> bool:
        return self.pattern.search(series.attribute(self.keyword)) is not None


def cases_by_channel_rules(series: list[DicomSeries], rules: list[ChannelRule]
                           ) -> tuple[dict[str, tuple[DicomSeries, ...]], dict[str, str]]:
    """One case per study (``<PatientID>_<8 hex of the study UID>``) with one series per rule, in the rules' order,
    and the studies that cannot be one (case -> why: no series or several series match a rule, or the channels
    are on different grids). Series that no rule matches are not used."""
    studies: dict[str, list[DicomSeries]] = {}
    for one in series:
        studies.setdefault(one.study_uid, []).append(one)
    cases, failed = {}, {}
    for study_uid, members in studies.items():
        case_id = f"{_readable(members[0].patient_id, 'study')}_{_short_hash(study_uid)}"
        chosen, problems = [], []
        for k, rule in enumerate(rules):
            matching = [m for m in members if rule.matches(m)]
            if len(matching) != 1:
                names = ", ".join(f"{m.case_id} ({rule.keyword} {m.attribute(rule.keyword)!r})" for m in matching)
                problems.append(f"channel {k} ({rule.text!r}): " + (f"{len(matching)} series match: {names}; "
                                "make the rule stricter" if matching else "no series matches; the study's series "
                                f"are {', '.join(repr(m.attribute(rule.keyword)) for m in members)}"))
            else:
                chosen.append(matching[0])
        if not problems and len({c.uid for c in chosen}) < len(chosen):
            problems.append("one series matches the rules of several channels; make the rules tell them apart")
        if not problems and any(not np.allclose(c.grid, chosen[0].grid, atol=1e-3) for c in chosen):
            problems.append(f"its channels ({', '.join(c.case_id for c in chosen)}) are not on one grid (size, "
                            "position, orientation and spacing); resample them onto the first channel's first")
        if problems:
            failed[case_id] = "; ".join(problems)
        else:
            cases[case_id] = tuple(chosen)
    return dict(sorted(cases.items())), failed


def read_dicom_case(channels: tuple[DicomSeries, ...]) -> tuple[np.ndarray, Geometry]:
    """A case's series as its channels, ``(c, z, y, x)``, on the first channel's geometry (they share one grid)."""
    arrays = [read_dicom_series(series) for series in channels]
    return np.concatenate([array for array, _ in arrays]), arrays[0][1]


CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def write_dicom_series(volume: np.ndarray, geometry: Geometry, folder: Path, series_uid: str,
                       description: str = "generated", series_number: int = 1, intercept: float = 0.0,
                       file_names: list[str] | None = None, patient_id: str = "generated",
                       compression: Literal["JPEG", "JPEG2000"] | None = None) -> list[Path]:
    """A ``(z, y, x)`` int16 volume as a CT series of one file per slice (test data and examples): positions along
    the geometry's third direction, the given rescale intercept (the writer stores ``volume - intercept``).
    ``file_names``: the files' names in slice order (default ``slice_<k>.dcm``); ``compression``: JPEG lossless
    (process 14) or JPEG 2000 lossless pixel data, the compressed variants archives send."""
    folder.mkdir(parents=True, exist_ok=True)
    direction = np.array(geometry.sitk_direction).reshape(3, 3)
    row, column, normal = direction[:, 0], direction[:, 1], direction[:, 2]
    origin, (sx, sy, sz) = np.array(geometry.sitk_origin), geometry.sitk_spacing
    study_uid, frame_of_reference = (series_uid.rsplit(".", 1)[0] + suffix for suffix in (".1", ".2"))
    writer = sitk.ImageFileWriter()
    writer.SetImageIO("GDCMImageIO")
    writer.KeepOriginalImageUIDOn()
    if compression is not None:
        writer.SetUseCompression(True)
        writer.SetCompressor(compression)
    paths = []
    for k in range(volume.shape[0]):
        position = origin + k * sz * normal
        image = sitk.GetImageFromArray(np.asarray(volume[k:k + 1], dtype=np.int16))  # one slice, as a 3D image
        image.SetSpacing((sx, sy, sz))  # the writer takes position, orientation and pixel spacing from these
        image.SetOrigin(tuple(float(v) for v in position))
        image.SetDirection(geometry.sitk_direction)
        tags = {"0008|0016": CT_IMAGE_STORAGE, "0008|0018": f"{series_uid}.{k + 1}", "0008|0060": "CT",
                "0008|0008": "ORIGINAL\\PRIMARY\\AXIAL", "0020|000d": study_uid, "0020|000e": series_uid,
                "0020|0011": str(series_number), "0020|0013": str(k + 1), "0008|103e": description,
                "0020|0032": "\\".join(f"{v:.6f}" for v in position),
                "0020|0037": "\\".join(f"{v:.6f}" for v in (*row, *column)),
                "0028|0030": f"{sy:.6f}\\{sx:.6f}", "0018|0050": f"{sz:.6f}",
                "0028|1052": f"{intercept:g}", "0028|1053": "1", "0010|0020": patient_id,
                "0010|0010": "Generated^Test", "0020|0052": frame_of_reference, "0008|0020": "20261207",
                "0008|0030": "120000", "0020|0010": "1", "0008|0050": "1", "0008|0090": "", "0010|0030": "",
                "0010|0040": "O", "0008|0070": "nnlight", "0018|5100": "HFS", "0020|1040": "", "0018|0060": "",
                "0020|0012": "1", "0028|1054": "HU", "0020|0060": ""}
        for tag, value in tags.items():
            image.SetMetaData(tag, value)
        path = folder / (file_names[k] if file_names else f"slice_{k:04d}.dcm")
        writer.SetFileName(str(path))
        with _keeping_locale():
            writer.Execute(image)
        paths.append(path)
    return paths
