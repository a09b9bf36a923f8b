"""A prediction as a DICOM Segmentation (SEG) of the series it was made from (issue 34, item 3, first part).

Written with highdicom: it references the source series and its instances (one frame per source slice, the same
frame of reference), one segment per foreground label with the dataset's label name, the algorithm identified
(nnlight, its version and the model), automatic segmentation, a generic coded category and type per segment
("Tissue"). Binary frames without the empty ones: the SEG type every viewer and validator reads (label-map SEG
is newer than most of them).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nnlight import __version__
from nnlight.raw.dicom import DicomSeries
from nnlight.utils.errors import UserError
from nnlight.utils.files import atomic_write_named


def _highdicom() -> Any:
    try:
        import highdicom
    except ImportError:
        raise UserError('output_format=dicom_seg needs highdicom: pip install "nnlight[dicom]"') from None
    return highdicom


def write_dicom_seg(segmentation: np.ndarray, series: DicomSeries, labels: Mapping[str, int], model: str,
                    path: Path) -> None:
    """``segmentation`` ``(z, y, x)`` in the series' slice order (label values of ``labels``, background 0) as a
    SEG referencing ``series``; written atomically to ``path``."""
    hd = _highdicom()
    import pydicom
    from pydicom.sr.codedict import codes

    foreground = sorted((value, name) for name, value in labels.items() if value != 0)
    numbered = np.zeros(segmentation.shape, np.uint16)  # segment numbers 1..K in label order
    for number, (value, _) in enumerate(foreground, start=1):
        numbered[segmentation == value] = number
    algorithm = hd.AlgorithmIdentificationSequence(name="nnlight", version=__version__,
                                                   family=codes.cid7162.ArtificialIntelligence, source=model[-64:])
    segments = [hd.seg.SegmentDescription(
        segment_number=number, segment_label=name[:64], segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=codes.SCT.Tissue, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm) for number, (_, name) in enumerate(foreground, start=1)]
    sources = [pydicom.dcmread(str(f)) for f in series.files]
    try:
        seg = _segmentation(hd, sources, numbered, segments, series)
    except (ValueError, TypeError, AttributeError) as e:  # what the source series lacks for a valid SEG
        raise UserError(f"DICOM series {series.case_id} ({series.files[0].parent}): no DICOM SEG can refer to it: "
                        f"{e}. Its segmentation is written as an image (output_format=image)") from None
    atomic_write_named(path, lambda tmp: seg.save_as(str(tmp)))


def _segmentation(hd: Any, sources: list[Any], numbered: np.ndarray, segments: list[Any], series: DicomSeries
                  ) -> Any:
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=numbered, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments, series_instance_uid=hd.UID(), series_number=9000 + int(
            sources[0].get("SeriesNumber", 0) or 0) % 1000, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="nnlight", manufacturer_model_name=f"nnlight {__version__}", software_versions=__version__,
        device_serial_number="0", series_description=f"nnlight segmentation of {series.case_id}"[:64],
        omit_empty_frames=True)
