"""A prediction as a DICOM Segmentation (SEG) of the series it was made from (issue 34, item 3).

Written with highdicom: it references the source series and its instances (one frame per source slice, or per
frame of an enhanced multi-frame source; the same frame of reference), one segment per label (or per region of a
region-based model: regions overlap, so they are binary segments) with the dataset's name, the algorithm
identified (nnlight, its version, the model, configuration and folds), automatic segmentation, and a coded
category and type per segment: "Tissue" unless a codes file gives proper ones (SNOMED CT, ...).

``binary`` (default) stores each segment's frames without the empty ones: the SEG type every viewer and validator
reads. ``labelmap`` stores one frame per slice holding every label (DICOM 2024, Supplement 243), JPEG-LS lossless
compressed: compact and fast for many classes, read by highdicom and recent viewers, not yet by older validators
(dciodvfy of 2022) and viewers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nnlight import __version__
from nnlight.raw.dicom import DicomSeries, highdicom_module
from nnlight.raw.io import Geometry
from nnlight.utils.errors import UserError
from nnlight.utils.files import atomic_write_named, load_json

SegType = Literal["binary", "labelmap"]
JPEGLS_LOSSLESS = "1.2.840.10008.1.2.4.80"  # label maps compress ~50x (BENCHMARKS.md); pyjpegls comes with highdicom
GENERIC_CODE = ("SCT", "85756007", "Tissue")  # SNOMED CT's "Tissue": category and type where no code is given


@dataclass(frozen=True)
class SegmentCodes:
    """A segment's coded category and type, each (coding scheme, code value, meaning)."""

    category: tuple[str, str, str] = GENERIC_CODE
    type: tuple[str, str, str] = GENERIC_CODE


def load_segment_codes(file: Path, names: list[str]) -> dict[str, SegmentCodes]:
    """A codes file: ``{"<label>": {"category": [scheme, value, meaning], "type": [...]}, ...}``; labels it leaves
    out keep the generic code."""
    try:
        values = load_json(file)
    except (OSError, ValueError) as e:
        raise UserError(f"dicom_seg_codes={file}: cannot be read as JSON ({e})") from None
    example = ('{"liver": {"category": ["SCT", "123037004", "Anatomical Structure"], "type": ["SCT", "10200004", '
               '"Liver"]}}')
    if not isinstance(values, dict):
        raise UserError(f"dicom_seg_codes={file}: write {example}")
    codes = {}
    for label, entry in values.items():
        if label not in names:
            raise UserError(f"dicom_seg_codes={file}: {label!r} is not a label of this model; its labels are "
                            f"{', '.join(names)}")
        if not isinstance(entry, dict) or set(entry) != {"category", "type"} or not all(
                isinstance(code, list) and len(code) == 3 and all(isinstance(v, str) and v for v in code)
                for code in entry.values()):
            raise UserError(f"dicom_seg_codes={file}: {label!r} needs a category and a type, each [coding scheme, "
                            f"code value, meaning], e.g. {example}")
        codes[label] = SegmentCodes(tuple(entry["category"]), tuple(entry["type"]))
    return codes


@dataclass(frozen=True)
class SegSettings:
    """What every SEG of a prediction run shares: its segments (name -> the label values they cover; several for
    a region), their codes, the SEG type, and the algorithm (model, configuration, folds). An instance model's
    SEG has a segment per object instead (``instances``: the objects' label, e.g. "cell": "cell 1", "cell 2", ...,
    each with that label's code)."""

    segments: Mapping[str, tuple[int, ...]]
    algorithm: Mapping[str, str]
    seg_type: SegType = "binary"
    codes: Mapping[str, SegmentCodes] | None = None
    instances: str | None = None

    def __post_init__(self) -> None:
        if self.seg_type == "labelmap" and self.overlapping:
            raise UserError("dicom_seg_type=labelmap holds one label per voxel, and this model's regions overlap: "
                            "use dicom_seg_type=binary")

    @classmethod
    def of_labels(cls, labels: Mapping[str, int], model: str) -> SegSettings:
        """A segment per foreground label of a ``{name: value}`` label map (generated data, tests)."""
        return cls({name: (value,) for name, value in labels.items() if value != 0}, {"model": model})

    @property
    def overlapping(self) -> bool:
        return any(len(values) > 1 for values in self.segments.values())


def _code(hd: Any, code: tuple[str, str, str]) -> Any:
    scheme, value, meaning = code
    return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def write_dicom_seg(segmentation: np.ndarray, series: DicomSeries, geometry: Geometry, settings: SegSettings,
                    path: Path) -> None:
    """``segmentation`` ``(z, y, x)`` (label values, background 0; in the series' layout and ``geometry``, as
    read) as a SEG referencing ``series``; written atomically to ``path``."""
    hd = highdicom_module("output_format=dicom_seg")
    import pydicom
    from pydicom.sr.codedict import codes

    segments = settings.segments if settings.instances is None else {
        f"{settings.instances} {i}": (int(i),) for i in np.unique(segmentation) if i != 0}
    if not segments:
        raise UserError(f"DICOM series {series.case_id}: no object found, and a DICOM SEG holds at least one "
                        "segment; its (empty) segmentation is written as an image only")
    names = list(segments)
    if any(len(values) > 1 for values in segments.values()):  # overlapping regions: a mask each
        pixels = np.stack([np.isin(segmentation, segments[name]) for name in names], axis=-1).astype(np.uint8)
    else:  # segment numbers in one array (as highdicom takes exclusive segments): no mask per class in memory
        numbering = np.zeros(int(segmentation.max(initial=0)) + 1, np.uint16)
        for number, name in enumerate(names, start=1):
            numbering[[v for v in segments[name] if v < len(numbering)]] = number
        pixels = numbering[segmentation]
    algorithm = hd.AlgorithmIdentificationSequence(
        name="nnlight", version=__version__, family=codes.cid7162.ArtificialIntelligence,
        source=settings.algorithm.get("model", "")[-64:] or None,
        parameters={k: v[-64:] for k, v in settings.algorithm.items()})
    known = settings.codes or {}
    coded = {name: known.get(settings.instances or name, SegmentCodes()) for name in names}
    descriptions = [hd.seg.SegmentDescription(
        segment_number=number, segment_label=name[:64], segmented_property_category=_code(hd, coded[name].category),
        segmented_property_type=_code(hd, coded[name].type),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm)
        for number, name in enumerate(names, start=1)]
    sources = [pydicom.dcmread(str(f), stop_before_pixels=True) for f in series.files]  # references only
    if series.multiframe:  # frames matched to the source's by their positions
        pixel_array: Any = hd.Volume(pixels, volume_affine(geometry), "PATIENT",
                                     frame_of_reference_uid=sources[0].FrameOfReferenceUID,
                                     channels=None if pixels.ndim == 3 else {"SegmentNumber": list(range(
                                         1, len(names) + 1))})
    else:
        pixel_array = pixels
    try:
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=pixel_array,
            segmentation_type=hd.seg.SegmentationTypeValues[settings.seg_type.upper()],
            segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=9000 + int(
                sources[0].get("SeriesNumber", 0) or 0) % 1000, sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer="nnlight", manufacturer_model_name=f"nnlight {__version__}", software_versions=__version__,
            device_serial_number="0", series_description=f"nnlight segmentation of {series.case_id}"[:64],
            omit_empty_frames=True, **({"transfer_syntax_uid": JPEGLS_LOSSLESS} if settings.seg_type == "labelmap"
                                        else {}))
    except (ValueError, TypeError, AttributeError) as e:  # what the source series lacks for a valid SEG
        raise UserError(f"DICOM series {series.case_id} ({series.files[0].parent}): no DICOM SEG can refer to it: "
                        f"{e}. Its segmentation is written as an image (output_format=image)") from None
    atomic_write_named(path, lambda tmp: seg.save_as(str(tmp)))


def volume_affine(geometry: Geometry) -> np.ndarray:
    """The 4x4 matrix from a ``(z, y, x)`` array's indices to patient coordinates (highdicom's ``Volume``)."""
    axes = np.array(geometry.sitk_direction, dtype=float).reshape(3, 3)  # columns: x, y, z directions
    affine = np.eye(4)
    for index, axis in enumerate((2, 1, 0)):
        affine[:3, index] = axes[:, axis] * geometry.sitk_spacing[axis]
    affine[:3, 3] = geometry.sitk_origin
    return affine
