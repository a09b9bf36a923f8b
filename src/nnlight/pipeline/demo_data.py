"""nnlight-demo-data: nnlight's synthetic demo datasets in nnU-Net raw format, and a synthetic DICOM collection.

``dicom=<folder>`` writes the collection in the layout The Cancer Imaging Archive serves: per patient a study of
two CT series (two contrast phases of the same grid) and a DICOM SEG of its blobs, for nnlight-convert-dicom's
demo and tests. Everything is made here from nnlight's synthetic blobs: nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from nnlight.inference.dicom_seg import SegSettings, write_dicom_seg
from nnlight.raw.dicom import scan_dicom, write_dicom_series
from nnlight.raw.io import Geometry
from nnlight.raw.synthetic import (
    IGNORE_VALUE,
    blobs_dataset_json,
    cells_dataset_json,
    demo_kind,
    make_instance_dataset,
    make_synthetic_dataset,
    synthetic_case,
)
from nnlight.utils.command_line import key_value_arguments
from nnlight.utils.errors import UserError, exit_on_user_error
from nnlight.utils.files import load_json

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write nnlight's synthetic demo dataset in nnU-Net raw format.",
                                     usage="nnlight-demo-data [raw=data/raw id=900 name=Demo cases=8 2d=true "
                                           "regions=true ignore=true instances=true | dicom=<folder>]")
    parser.add_argument("--raw", default="data/raw", help="raw datasets root (default: data/raw)")
    parser.add_argument("--id", type=int, default=None, help="dataset number (default: one per kind, 900 for 3D)")
    parser.add_argument("--name", default=None, help="dataset name (default: one per kind: Demo, Demo2D, ...)")
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--2d", dest="two_d", action="store_true", help="2D PNG images instead of 3D NIfTI")
    parser.add_argument("--regions", action="store_true", help="declare the labels as nested regions")
    parser.add_argument("--ignore", action="store_true", help="leave half of the background unannotated "
                        f"(ignore label {IGNORE_VALUE})")
    parser.add_argument("--instances", action="store_true", help="cells with instance maps (every cell its own "
                        "id; dataset.json \"instance_maps\": true), 2D or anisotropic 3D")
    parser.add_argument("--dicom", default=None, help="instead: a DICOM collection (two CT phases and a SEG per "
                        "patient, TCIA's layout) in this folder, for nnlight-convert-dicom")
    args = parser.parse_args(key_value_arguments(parser, argv))
    with exit_on_user_error():
        if args.dicom is not None:
            if Path(args.dicom).exists() and any(Path(args.dicom).iterdir()):
                raise UserError(f"dicom={args.dicom}: the folder holds files already; give a new or empty folder")
            print(json.dumps({"dicom_collection": str(make_dicom_collection(args.dicom, args.cases))}))
            return
        if args.instances and (args.regions or args.ignore):
            raise UserError("instances=true makes cells with instance maps; regions= and ignore= do not apply to it")
        default_id, default_name = demo_kind(args.two_d, args.regions, args.ignore, args.instances)
        dataset_id, name = default_id if args.id is None else args.id, args.name or default_name
        ending = ".png" if args.two_d else ".nii.gz"
        expected = cells_dataset_json(name, args.cases, ending) if args.instances else \
            blobs_dataset_json(name, args.cases, 1 if args.two_d else 2, ending, args.regions, args.ignore)
        folder = Path(args.raw) / f"Dataset{dataset_id:03d}_{name}"
        if folder.is_dir() and (folder / "dataset.json").is_file() and load_json(folder / "dataset.json") == expected:
            print(json.dumps({"dataset": folder.name, "folder": str(folder), "note": "already there"}))
            return
        if args.instances:
            shape, spacing = ((64, 64), (1.0, 1.0)) if args.two_d else ((16, 64, 64), (3.0, 1.0, 1.0))
            folder = make_instance_dataset(args.raw, dataset_id, name, args.cases, shape, spacing)
        else:
            folder = make_synthetic_dataset(args.raw, dataset_id, name, args.cases,
                                            shape=(64, 80) if args.two_d else (24, 48, 40),
                                            num_channels=1 if args.two_d else 2, regions=args.regions,
                                            ignore=args.ignore)
    print(json.dumps({"dataset": folder.name, "folder": str(folder)}))


if __name__ == "__main__":
    main()
