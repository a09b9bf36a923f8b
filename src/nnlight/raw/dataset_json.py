"""The ``dataset.json`` schema of nnU-Net v2, validated with every problem collected.

A malformed dataset.json is the most common first mistake, so validation never stops at the first
problem: it returns all of them, each naming the key and the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nnlight.raw.instances import border_core_labels
from nnlight.raw.io import format_names
from nnlight.raw.labels import LabelLayout
from nnlight.utils.errors import DatasetProblems
from nnlight.utils.files import JsonFileError, load_json
from nnlight.utils.names import DATASET_NAME as DATASET_NAME_PATTERN

REQUIRED_KEYS = ("channel_names", "labels", "numTraining", "file_ending")


@dataclass(frozen=True)
class DatasetJson:
    """A validated dataset.json; ``raw`` keeps the original dict so it can be copied verbatim."""

    channel_names: dict[str, str]
    labels: dict[str, int | tuple[int, ...]]
    num_training: int
    file_ending: str
    regions_class_order: tuple[int, ...] | None = None
    overwrite_image_reader_writer: str | None = None
    instance_maps: bool = False  # labelsTr holds instance maps (every object its own id) of the one foreground label
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def channel_name_list(self) -> list[str]:
        return [self.channel_names[str(i)] for i in range(self.num_channels)]

    @property
    def object_name(self) -> str | None:
        """An instance dataset's one foreground label (what its objects are), else None."""
        return next((k for k in self.labels if k != "background"), None) if self.instance_maps else None

    @property
    def training_labels(self) -> dict[str, int | tuple[int, ...]]:
        """What the network learns: the labels, or for instance maps their border-core labels."""
        if self.instance_maps:
            return dict(border_core_labels(str(self.object_name)))
        return dict(self.labels)

    @property
    def layout(self) -> LabelLayout:
        """The labels the network learns (border-core for instance maps)."""
        return LabelLayout(self.training_labels, self.regions_class_order)

    @property
    def ignore_label(self) -> int | None:
        return self.layout.ignore_label

    @property
    def has_regions(self) -> bool:
        return self.layout.has_regions

    @property
    def label_values(self) -> list[int]:
        """All integer label values except the ignore label, sorted (nnU-Net's ``all_labels``)."""
        return self.layout.label_values

    @property
    def allowed_label_values(self) -> list[int]:
        """Values a label file may contain: the labels plus the ignore label."""
        ignore = self.ignore_label
        return self.label_values + ([ignore] if ignore is not None else [])


def parse_labels(labels: Any, problems: list[str], where: str) -> dict[str, int | tuple[int, ...]]:
    """``labels`` of a dataset.json (or a plan) as name -> value or region; what is wrong goes into ``problems``."""
    if not isinstance(labels, dict) or not labels:
        problems.append(f'{where}: "labels" must be a non-empty mapping name -> integer, e.g. '
                        '{"background": 0, "tumor": 1}')
        return {}
    parsed: dict[str, int | tuple[int, ...]] = {}
    for name, value in labels.items():
        if isinstance(value, bool):
            value = None
        if isinstance(value, int):
            parsed[name] = value
        elif isinstance(value, (list, tuple)) and value and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            parsed[name] = tuple(value)
        else:
            problems.append(f'{where}: label "{name}" has value {value!r}; use an integer '
                            '(or a list of integers for a region)')
    if labels.get("background") != 0:
        problems.append(f'{where}: "labels" must contain "background": 0')
    values = sorted({v for k, val in parsed.items() if k != "ignore"
                     for v in (val if isinstance(val, tuple) else (val,))})
    ignore = parsed.get("ignore")
    if isinstance(ignore, tuple):
        problems.append(f'{where}: the "ignore" label must be a single integer')
        ignore = None
    expected = values + ([ignore] if ignore is not None else [])
    if expected and expected != list(range(len(expected))):
        problems.append(f"{where}: label values must be consecutive integers starting at 0 (with the ignore "
                        f"label, if any, the highest); found {expected}. Renumber the labels and the label files")
    return parsed


def _instance_label_problems(labels: dict[str, int | tuple[int, ...]], where: str) -> list[str]:
    """Instance maps number objects of one kind: one foreground label, no regions, no ignore label."""
    foreground = {k: v for k, v in labels.items() if k != "background"}
    if any(isinstance(v, tuple) for v in foreground.values()):
        return [f'{where}: "instance_maps": true with region labels (lists of values, which overlap); an instance '
                'dataset declares one label for its objects, e.g. {"background": 0, "cell": 1}']
    if list(foreground.values()) != [1]:
        return [f'{where}: "instance_maps": true needs exactly one foreground label with value 1 (what the objects '
                f'are, e.g. {{"background": 0, "cell": 1}}); found {labels}. The label files hold object ids '
                "1, 2, 3, ..., not these values"]
    return []


def parse_dataset_json(data: Any, where: str) -> tuple[DatasetJson | None, list[str]]:
    """Validate a loaded dataset.json. Returns the parsed object (None if unusable) and all problems."""
    problems: list[str] = []
    if not isinstance(data, dict):
        return None, [f"{where}: must contain a JSON object with keys {', '.join(REQUIRED_KEYS)}"]
    if "channel_names" not in data and "modality" in data:
        data = {**data, "channel_names": data["modality"]}
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        problems.append(f"{where}: missing required key(s) {', '.join(missing)}")

    channel_names = data.get("channel_names", {})
    if not isinstance(channel_names, dict) or not channel_names:
        if "channel_names" in data:
            problems.append(f'{where}: "channel_names" must be a non-empty mapping like {{"0": "CT"}}')
        channel_names = {}
    else:
        channel_names = {str(k): v for k, v in channel_names.items()}
        if set(channel_names) != {str(i) for i in range(len(channel_names))} or not all(
                isinstance(v, str) for v in channel_names.values()):
            problems.append(f'{where}: "channel_names" keys must be "0", "1", ... and values strings; '
                            f"found {channel_names}")

    labels = parse_labels(data["labels"], problems, where) if "labels" in data else {}

    num_training = data.get("numTraining")
    if "numTraining" in data and (not isinstance(num_training, int) or isinstance(num_training, bool)
                                  or num_training < 1):
        problems.append(f'{where}: "numTraining" must be a positive integer, found {num_training!r}')

    file_ending = data.get("file_ending")
    if "file_ending" in data and (not isinstance(file_ending, str) or not file_ending.startswith(".")):
        problems.append(f'{where}: "file_ending" must be a string starting with a dot, e.g. ".nii.gz"; '
                        f"found {file_ending!r}")

    regions_class_order = data.get("regions_class_order")
    is_region_based = any(isinstance(v, tuple) for k, v in labels.items() if k != "ignore")
    if regions_class_order is not None:
        if not isinstance(regions_class_order, list) or not all(isinstance(i, int) for i in regions_class_order):
            problems.append(f'{where}: "regions_class_order" must be a list of integers')
            regions_class_order = None
        elif is_region_based:
            n_regions = len([k for k, v in labels.items() if k not in ("background", "ignore")])
            if len(regions_class_order) != n_regions:
                problems.append(f'{where}: "regions_class_order" has {len(regions_class_order)} entries but there '
                                f"are {n_regions} regions; give one entry per region")
    elif is_region_based:
        problems.append(f'{where}: labels are regions (lists) but "regions_class_order" is missing; add one '
                        "integer per region saying which label it paints in the final segmentation")

    instance_maps = data.get("instance_maps", False)
    if not isinstance(instance_maps, bool):
        problems.append(f'{where}: "instance_maps" must be true or false, found {instance_maps!r}')
    elif instance_maps and labels:
        problems += _instance_label_problems(labels, where)

    reader = data.get("overwrite_image_reader_writer")
    if reader is not None and reader not in format_names():
        problems.append(f'{where}: "overwrite_image_reader_writer" is {reader!r}; nnlight reads '
                        f"{' or '.join(format_names())} — remove the key to choose by file ending")

    if problems:
        return None, problems
    return DatasetJson(
        channel_names=channel_names,
        labels=labels,
        num_training=num_training,
        file_ending=file_ending,
        regions_class_order=tuple(regions_class_order) if regions_class_order is not None else None,
        overwrite_image_reader_writer=reader,
        instance_maps=instance_maps,
        raw=dict(data),
    ), []


def read_dataset_json_problems(path: Path) -> tuple[DatasetJson | None, list[str]]:
    """Load and validate ``path``; a missing or unparsable file is itself a problem."""
    if not path.is_file():
        return None, [f"{path}: not found. A dataset folder needs a dataset.json next to imagesTr/ and labelsTr/"]
    try:
        data = load_json(path)
    except JsonFileError as e:
        return None, [str(e)]
    return parse_dataset_json(data, str(path))


def load_dataset_json(path: str | Path) -> DatasetJson:
    """Load a dataset.json, raising one error listing every problem."""
    path = Path(path)
    parsed, problems = read_dataset_json_problems(path)
    if parsed is None:
        raise DatasetProblems(path.parent.name, problems)
    return parsed


def dataset_name_problem(name: str, where: str) -> str | None:
    if DATASET_NAME_PATTERN.match(name):
        return None
    return (f"{where}: dataset folder name {name!r} does not follow DatasetXXX_Name (three digits, then a name), "
            f"e.g. Dataset501_{re.sub(r'[^A-Za-z0-9]', '', name) or 'MyData'}; rename the folder")
