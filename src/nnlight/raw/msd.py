"""Convert a Medical Segmentation Decathlon folder (``TaskXX_Name``, 4D multi-channel NIfTI) to nnU-Net v2 raw.

MSD stores all channels of a case in one 4D file and lists them under ``modality``; nnU-Net v2 wants one
3D file per channel (``<case>_0000.nii.gz``, ...), ``channel_names`` and ``labels`` as name -> value.
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

import SimpleITK as sitk

from nnlight.utils.command_line import key_value_arguments
from nnlight.utils.errors import UserError, exit_on_user_error
from nnlight.utils.files import atomic_write_json, load_json

TASK_PATTERN = re.compile(r"^Task(\d{2,3})_(.+)$")


def _split_channels(source: Path, out_dir: Path, case_id: str) -> int:
    image = sitk.ReadImage(str(source))
    is_4d = image.GetDimension() == 4
    channels = [image[:, :, :, t] for t in range(image.GetSize()[3])] if is_4d else [image]
    for c, channel in enumerate(channels):
        sitk.WriteImage(channel, str(out_dir / f"{case_id}_{c:04d}.nii.gz"), useCompression=True)
    return len(channels)


def _case_files(folder: Path) -> list[Path]:
    """MSD archives contain macOS ``._`` resource files next to the real ones; skip them."""
    return sorted(p for p in folder.glob("*.nii.gz") if not p.name.startswith("."))


def convert_msd(task_folder: str | Path, raw_root: str | Path, dataset_id: int | None = None) -> Path:
    """Write ``Dataset<id>_<Name>`` under ``raw_root``; the id defaults to the task number."""
    task_folder = Path(task_folder)
    match = TASK_PATTERN.match(task_folder.name)
    if match is None:
        raise UserError(f"{task_folder}: an MSD folder is named TaskXX_Name (e.g. Task04_Hippocampus)")
    source_json = task_folder / "dataset.json"
    if not source_json.is_file():
        raise UserError(f"{source_json}: not found; is {task_folder} an MSD task folder?")
    meta = load_json(source_json)
    if "modality" not in meta or "labels" not in meta:
        raise UserError(f"{source_json}: an MSD dataset.json has 'modality' and 'labels'")
    number = dataset_id if dataset_id is not None else int(match[1])
    target = Path(raw_root) / f"Dataset{number:03d}_{match[2]}"
    if target.exists():
        raise UserError(f"{target}: already exists; remove it or pass another --id")
    tmp = target.with_name(f".{target.name}.converting")
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (tmp / sub).mkdir(parents=True)
    num_channels = len(meta["modality"])
    training = _case_files(task_folder / "imagesTr")
    for image in training:
        case_id = image.name[: -len(".nii.gz")]
        label = task_folder / "labelsTr" / image.name
        if not label.is_file():
            raise UserError(f"{label}: label missing for training image {image.name}")
        if _split_channels(image, tmp / "imagesTr", case_id) != num_channels:
            raise UserError(f"{image}: channel count differs from the {num_channels} modalities in dataset.json")
        shutil.copyfile(label, tmp / "labelsTr" / image.name)
    if (task_folder / "imagesTs").is_dir():
        for image in _case_files(task_folder / "imagesTs"):
            _split_channels(image, tmp / "imagesTs", image.name[: -len(".nii.gz")])
    atomic_write_json(tmp / "dataset.json", {
        "name": meta.get("name", match[2]),
        "description": meta.get("description", ""),
        "reference": meta.get("reference", ""),
        "licence": meta.get("licence", ""),
        "channel_names": {str(k): v for k, v in meta["modality"].items()},
        "labels": {name: int(value) for value, name in meta["labels"].items()},
        "numTraining": len(training),
        "file_ending": ".nii.gz",
    })
    tmp.rename(target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Convert an MSD TaskXX_Name folder into nnU-Net v2 raw format.",
                                     usage="nnlight-convert-msd task_folder=<TaskXX_Name> [raw=data/raw id=<number>]")
    parser.add_argument("task_folder")
    parser.add_argument("--raw", default="data/raw", help="raw datasets root (default: data/raw)")
    parser.add_argument("--id", type=int, default=None, help="dataset number (default: the task number)")
    args = parser.parse_args(key_value_arguments(parser, argv))
    with exit_on_user_error():
        target = convert_msd(args.task_folder, args.raw, args.id)
    print(f"Converted to {target}")


if __name__ == "__main__":
    main()
