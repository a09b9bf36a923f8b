"""Find the cases of a raw nnU-Net v2 dataset folder and check them before anything is written.

Layout: ``imagesTr/<case>_<XXXX><ending>`` (one file per channel, or one RGB(A) file for 2D colour
images), ``labelsTr/<case><ending>``, optional ``imagesTs/``, and ``dataset.json``. Every problem is
collected — layout, dataset.json and per-case content — so a user can fix them in one pass.
"""

from __future__ import annotations

import re
import stat
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnlight.raw.dataset_json import DatasetJson, dataset_name_problem, read_dataset_json_problems
from nnlight.raw.instances import instance_map_problems
from nnlight.raw.io import (
    Geometry,
    ImageFormat,
    ImageReadError,
    check_finite,
    geometries_match,
    image_format,
    read_images,
    read_seg,
    supported_endings,
)
from nnlight.utils.errors import DatasetProblems

CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(frozen=True)
class RawCase:
    case_id: str
    image_files: tuple[Path, ...]
    label_file: Path


@dataclass(frozen=True)
class RawDataset:
    name: str
    folder: Path
    dataset_json: DatasetJson
    cases: tuple[RawCase, ...]
    image_format: ImageFormat  # how its files are read (by dataset.json's file_ending)


def _ending_of(name: str) -> str:
    for ending in supported_endings():
        if name.lower().endswith(ending):
            return name[-len(ending):]
    return Path(name).suffix


def not_a_file(path: Path) -> str | None:
    """What ``path`` is when it is not a regular file (or a link to one), in words; None for a regular file. A named
    pipe is never opened: reading it would wait forever."""
    try:
        mode = path.stat().st_mode
    except OSError as e:  # a link to nowhere, or one in a loop
        return f"a symbolic link that leads nowhere ({e.strerror})" if path.is_symlink() else f"unreadable ({e})"
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "a device file")


def group_channel_files(images_dir: Path, ending: str, files_per_case: int | None
                        ) -> tuple[dict[str, tuple[Path, ...]], list[str], dict[str, list[str]]]:
    """``<case>_<XXXX><ending>`` files grouped per case in channel order; a case with a channel problem maps to ().
    Returns the groups, the problems of files that name no case, and each case's channel problems.

    ``files_per_case`` is the channel count for one-channel-per-file formats; None for 2D natural images.
    """
    problems: list[str] = []
    case_problems: dict[str, list[str]] = defaultdict(list)
    channels: dict[str, dict[int, Path]] = defaultdict(dict)
    for f in sorted(p for p in images_dir.iterdir() if not p.name.startswith(".")):
        kind = not_a_file(f)
        if kind is not None:
            if f.name.endswith(ending):  # named like an image: say what it is, not that a channel is missing
                problems.append(f"{f}: {kind}, not an image file; replace it with the image or remove it")
            continue
        if not f.name.endswith(ending):
            problems.append(f"{f}: file ending {_ending_of(f.name)!r} differs from dataset.json's file_ending "
                            f"{ending!r}; convert the file or fix file_ending")
            continue
        match = CHANNEL_SUFFIX.match(f.name[: -len(ending)])
        if match is None:
            problems.append(f"{f}: name must be <case>_<XXXX>{ending} with a 4-digit channel index, "
                            f"e.g. case001_0000{ending}")
            continue
        channels[match["case"]][int(match["channel"])] = f
    grouped = {}
    for case_id in sorted(channels):
        indices = sorted(channels[case_id])
        expected = set(range(files_per_case if files_per_case is not None else max(indices) + 1))
        missing, extra = sorted(expected - set(indices)), sorted(set(indices) - expected)
        if missing:
            case_problems[case_id].append(f"{images_dir}: case {case_id!r} is missing channel file(s) "
                                          + ", ".join(f"{case_id}_{i:04d}{ending}" for i in missing))
        if extra:
            case_problems[case_id].append(f"{images_dir}: case {case_id!r} has channel file(s) beyond the "
                                          f"{files_per_case} declared in dataset.json: "
                                          + ", ".join(f"{case_id}_{i:04d}{ending}" for i in extra))
        grouped[case_id] = () if missing or extra else tuple(channels[case_id][i] for i in indices)
    return grouped, problems, dict(case_problems)


def discover_cases(folder: Path, dataset_json: DatasetJson, files_per_case: int | None
                   ) -> tuple[list[RawCase], list[str]]:
    """Group imagesTr files into cases and pair them with labelsTr files.

    ``files_per_case`` is the channel count for one-channel-per-file formats; None for 2D natural images,
    where one RGB file holds three channels (checked when the case is read).
    """
    problems: list[str] = []
    ending = dataset_json.file_ending
    images_dir, labels_dir = folder / "imagesTr", folder / "labelsTr"
    for d in (images_dir, labels_dir):
        if not d.is_dir():
            problems.append(f"{d}: folder missing; a raw dataset needs imagesTr/ and labelsTr/")
    if problems:
        return [], problems

    channels, problems, case_problems = group_channel_files(images_dir, ending, files_per_case)
    problems += [p for case in sorted(case_problems) for p in case_problems[case]]

    label_files = {}
    for f in sorted(p for p in labels_dir.iterdir() if not p.name.startswith(".")):
        kind = not_a_file(f)
        if kind is not None:
            problems.append(f"{f}: {kind}, not a label file; replace it with the labels or remove it")
            continue
        if not f.name.endswith(ending):
            problems.append(f"{f}: file ending {_ending_of(f.name)!r} differs from dataset.json's file_ending "
                            f"{ending!r}; convert the file or fix file_ending")
            continue
        label_files[f.name[: -len(ending)]] = f

    cases = []
    for case_id in sorted(channels):
        if not channels[case_id]:
            continue
        if case_id not in label_files:
            problems.append(f"{labels_dir / (case_id + ending)}: label file missing for case {case_id!r}; "
                            "add it or remove the case's images")
            continue
        cases.append(RawCase(case_id, channels[case_id], label_files[case_id]))
    for orphan in sorted(set(label_files) - set(channels)):
        problems.append(f"{label_files[orphan]}: label without images in imagesTr; add "
                        f"{orphan}_0000{ending} or remove the label")
    if not channels and not label_files:
        problems.append(f"{images_dir}: no training images found; put <case>_0000{ending} files here")
    found = len(channels)
    if dataset_json.num_training != found:
        problems.append(f"{folder / 'dataset.json'}: numTraining is {dataset_json.num_training} but imagesTr "
                        f"holds {found} case(s); set numTraining to {found}")
    return cases, problems


def open_raw_dataset(folder: str | Path) -> tuple[RawDataset | None, list[str]]:
    """Check the name, dataset.json and file layout (no image is read). Returns all problems found."""
    folder = Path(folder)
    if not folder.is_dir():
        return None, [f"{folder}: dataset folder not found"]
    problems = []
    if (p := dataset_name_problem(folder.name, str(folder))) is not None:
        problems.append(p)
    dataset_json, json_problems = read_dataset_json_problems(folder / "dataset.json")
    problems += json_problems
    if dataset_json is None:
        return None, problems
    try:
        file_format = image_format(dataset_json.file_ending, dataset_json.overwrite_image_reader_writer)
    except ImageReadError as e:
        return None, [*problems, f"{folder / 'dataset.json'}: {e}"]
    cases, layout_problems = discover_cases(folder, dataset_json, file_format.files_per_case(dataset_json.num_channels))
    problems += layout_problems
    return RawDataset(folder.name, folder, dataset_json, tuple(cases), file_format), problems


def read_case(case: RawCase, dataset_json: DatasetJson, file_format: ImageFormat
              ) -> tuple[list[str], np.ndarray | None, np.ndarray | None, Geometry | None]:
    """Read a case and check its content. Returns (problems, images, seg, geometry); arrays are None on failure."""
    try:
        images, geometry = read_images(case.image_files, file_format)
        seg, seg_geometry = read_seg(case.label_file, file_format)
    except ImageReadError as e:
        return [str(e)], None, None, None
    problems = []
    if images.shape[0] != dataset_json.num_channels:
        problems.append(f"{case.image_files[0].parent}: case {case.case_id!r} has {images.shape[0]} channel(s) "
                        f"but dataset.json declares {dataset_json.num_channels} ({dataset_json.channel_name_list})")
    if images.shape[1:] != seg.shape[1:]:
        problems.append(f"{case.label_file}: shape {seg.shape[1:]} differs from its image's {images.shape[1:]}; "
                        "the label must be on the image's voxel grid")
    elif not geometries_match(geometry, seg_geometry):
        problems.append(f"{case.label_file}: geometry (spacing/origin/direction) differs from its image "
                        f"(image spacing {geometry.sitk_spacing}, label {seg_geometry.sitk_spacing}); copy the "
                        "image's geometry into the label")
    nonfinite = check_finite(images, case.image_files)
    if nonfinite:
        problems.append(nonfinite)
    if dataset_json.instance_maps:
        problems += instance_map_problems(seg, str(case.label_file))
    elif np.issubdtype(seg.dtype, np.floating) and not np.all(np.isfinite(seg)):
        problems.append(f"{case.label_file}: contains NaN or Inf values; a label file holds integers only")
    else:
        values = np.unique(seg)
        allowed = dataset_json.allowed_label_values
        unexpected = [v.item() for v in values if v not in allowed]
        if unexpected:
            problems.append(f"{case.label_file}: contains label value(s) {unexpected} not declared in "
                            f"dataset.json (declared {allowed}); fix the file or declare them")
    if problems:
        return problems, None, None, None
    return [], images, seg, geometry


def require_raw_dataset(folder: str | Path) -> RawDataset:
    """Open a raw dataset or raise one error that lists every layout problem."""
    dataset, problems = open_raw_dataset(folder)
    if problems or dataset is None:
        raise DatasetProblems(Path(folder).name, problems)
    return dataset
