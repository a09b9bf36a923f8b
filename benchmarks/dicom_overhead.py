"""What DICOM in and DICOM SEG out add to predicting a full-size CT (issue 34, item 8).

    python -m benchmarks.dicom_overhead --model <a trained TotalSegCTExample 3d_fullres run> \\
        --ct ../shared/datasets/Dataset102_TotalSegCTExample/imagesTr/tsct_full_0000.nii.gz

The CT (and its reference labels: TotalSegmentator's organs) is resampled onto a 512 x 512 x 300 grid over the
same extent and written both as NIfTI and as a DICOM series of 300 slices. The same model (117 classes) predicts
it as nnlight-predict does (predict_folder: read, preprocess, sliding window, export, write): from the NIfTI file,
and from the DICOM folder (scan, read the series) with a SEG written beside the NIfTI (binary, then label map).
Then a SEG of the reference labels (a SEG of what a trained model would predict) is written alone, binary and as
a label map, with its time and size. One fold, without mirroring unless --mirroring: the cheapest prediction,
so the share DICOM adds is the largest it gets.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from benchmarks._common import provenance
from nnlight.inference.dicom_seg import SegSettings, write_dicom_seg
from nnlight.inference.folder import AlsoWrite, predict_folder
from nnlight.inference.predictor import Predictor
from nnlight.raw.dataset_json import load_dataset_json
from nnlight.raw.dicom import read_dicom_case, scan_dicom, write_dicom_series
from nnlight.raw.io import Geometry, read_images

SHAPE = (512, 512, 300)  # x, y, slices


def _resampled(path: Path, interpolator: int) -> sitk.Image:
    source = sitk.ReadImage(str(path))
    extent = [n * s for n, s in zip(source.GetSize(), source.GetSpacing(), strict=True)]
    spacing = [e / n for e, n in zip(extent, SHAPE, strict=True)]
    return sitk.Resample(source, SHAPE, sitk.Transform(), interpolator, source.GetOrigin(), spacing,
                         source.GetDirection(), 0, sitk.sitkInt16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a trained run folder of the CT's dataset")
    parser.add_argument("--ct", type=Path, required=True, help="<dataset>/imagesTr/<case>_0000.nii.gz")
    parser.add_argument("--mirroring", action="store_true", help="mirroring TTA, as nnlight-predict by default")
    args = parser.parse_args()
    labels_file = args.ct.parent.parent / "labelsTr" / args.ct.name.replace("_0000", "")
    print(provenance(f"DICOM in, SEG out: overhead on a 512x512x300 CT, mirroring {args.mirroring}"))
    image = _resampled(args.ct, sitk.sitkLinear)
    reference = sitk.GetArrayFromImage(_resampled(labels_file, sitk.sitkNearestNeighbor))
    geometry = Geometry(tuple(image.GetSpacing())[::-1], tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                        tuple(image.GetDirection()), False)
    dataset = load_dataset_json(args.ct.parent.parent / "dataset.json")
    labels = {name: value for name, value in dataset.labels.items() if isinstance(value, int)}
    settings = SegSettings.of_labels(labels, str(args.model))
    predictor = Predictor.from_model_folder(args.model, mirroring=args.mirroring, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "nifti").mkdir()
        sitk.WriteImage(image, str(folder / "nifti" / "ct_0000.nii.gz"), useCompression=True)
        write_dicom_series(sitk.GetArrayFromImage(image), geometry, folder / "dicom", "1.2.826.0.1.3680043.8.498.88.1",
                           description="benchmark CT", intercept=-1024)
        rows = []
        start = time.perf_counter()
        read_images([folder / "nifti" / "ct_0000.nii.gz"])
        rows.append(("read the NIfTI file (.nii.gz)", time.perf_counter() - start, ""))
        start = time.perf_counter()
        (series,) = scan_dicom(folder / "dicom").series
        scanned = time.perf_counter() - start
        read_dicom_case((series,))
        rows.append(("scan the DICOM folder (300 headers)", scanned, ""))
        rows.append(("read the DICOM series", time.perf_counter() - start - scanned, ""))

        start = time.perf_counter()
        predict_folder(predictor, {"ct": (folder / "nifti" / "ct_0000.nii.gz",)}, folder / "out_nifti", ".nii.gz")
        from_nifti = time.perf_counter() - start
        rows.append(("predict from NIfTI (nnlight-predict's steps)", from_nifti, "100 %"))
        for seg_type in ("binary", "labelmap"):
            start = time.perf_counter()
            (series,) = scan_dicom(folder / "dicom").series
            chosen = SegSettings(settings.segments, settings.algorithm, seg_type)  # type: ignore[arg-type]
            predict_folder(predictor, {"ct": series.files}, folder / f"out_{seg_type}", ".nii.gz",
                           read_case=lambda case, series=series: read_dicom_case((series,)),
                           also_write=AlsoWrite(lambda out, case: out / f"{case}_seg.dcm",
                                                lambda case, seg, geo, path, series=series, chosen=chosen:
                                                write_dicom_seg(seg, series, geo, chosen, path)))
            from_dicom = time.perf_counter() - start
            size = (folder / f"out_{seg_type}" / "ct_seg.dcm").stat().st_size
            rows.append((f"predict from DICOM + {seg_type} SEG of the prediction ({size / 1e6:.1f} MB)", from_dicom,
                         f"{100 * from_dicom / from_nifti:.1f} %"))
        written = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "out_binary" / "ct.nii.gz")))
        print(f"prediction: {len(np.unique(written)) - 1} foreground labels present; reference: "
              f"{len(np.unique(reference)) - 1} of {len(labels) - 1} labels")
        for seg_type in ("binary", "labelmap"):
            path = folder / f"reference_{seg_type}.dcm"
            start = time.perf_counter()
            write_dicom_seg(reference, series, geometry, SegSettings(settings.segments, settings.algorithm, seg_type),
                            path)  # type: ignore[arg-type]
            rows.append((f"{seg_type} SEG of the {len(np.unique(reference)) - 1} reference labels",
                         time.perf_counter() - start, f"{path.stat().st_size / 1e6:.1f} MB"))
        nifti_size = (folder / "out_nifti" / "ct.nii.gz").stat().st_size
        print(f"the prediction as .nii.gz: {nifti_size / 1e6:.2f} MB; the DICOM series: "
              f"{sum(p.stat().st_size for p in series.files) / 1e6:.0f} MB")
    print("| step | seconds | share / size |\n|---|---|---|")
    for name, seconds, note in rows:
        print(f"| {name} | {seconds:.2f} | {note} |")


if __name__ == "__main__":
    main()
