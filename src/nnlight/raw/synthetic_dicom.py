"""A synthetic DICOM collection in the layout The Cancer Imaging Archive serves (``nnlight-demo-data dicom=<folder>``):
per patient a study of two CT series (two contrast phases of the same grid) and a DICOM SEG of its blobs, for the
DICOM conversion's demo and tests. Made here from nnlight's synthetic blobs: nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnlight.inference.dicom_seg import SegSettings, write_dicom_seg
from nnlight.raw.dicom import scan_dicom, write_dicom_series
from nnlight.raw.io import Geometry
from nnlight.raw.synthetic import synthetic_case

ROOT_UID = "1.2.826.0.1.3680043.8.498.9701"  # generated data's own UID root: <root>.<case>.<series>
PHASES = ("arterial", "venous")
# the segment names of even and odd cases: a collection's annotators rarely spell them alike
SEGMENT_NAMES = ({"background": 0, "bright blob": 1, "dark blob": 2},
                 {"background": 0, "Bright_Blob": 1, "hypodense lesion": 2})


def make_dicom_collection(folder: str | Path, num_cases: int = 4, seed: int = 0,
                          shape: tuple[int, int, int] = (24, 48, 40)) -> Path:
    """``<folder>/PATIENT<k>/study/<n>-<phase>/<slice>.dcm`` and ``.../300-segmentation/1-1.dcm`` per case."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    geometry = Geometry((2.5, 0.8, 0.8), (0.8, 0.8, 2.5), (-16.0, -19.2, -30.0),
                        (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0), False)
    for case in range(num_cases):
        images, label = synthetic_case(shape, len(PHASES), rng)
        study = folder / f"PATIENT{case:03d}" / "study"
        for channel, phase in enumerate(PHASES):
            hounsfield = np.round(images[channel] * 4 - 300).astype(np.int16)
            write_dicom_series(hounsfield, geometry, study / f"{channel + 1}-{phase}",
                               f"{ROOT_UID}.{case + 1}.{channel + 10}", description=phase,
                               series_number=channel + 1, intercept=-1024, patient_id=f"PATIENT{case:03d}")
        (series,) = scan_dicom(study / "1-arterial").series
        write_dicom_seg(label, series, geometry, SegSettings.of_labels(SEGMENT_NAMES[case % 2], "nnlight-demo-data"),
                        study / "300-segmentation" / "1-1.dcm")
    return folder
