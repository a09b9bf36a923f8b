"""Extract the dataset fingerprint exactly as nnU-Net v2 does.

Per case: crop to non-zero, record spacing, shape after crop and relative size, and draw a seeded
sample (``RandomState(1234)``, with replacement) of foreground intensities per channel from a total
budget of 1e8 voxels. Pooled per channel: mean, median, std, min, max, 0.5/99.5 percentiles.
The JSON uses nnU-Net's keys, so an nnU-Net ``dataset_fingerprint.json`` loads as-is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from nnlight.raw.cropping import crop_to_nonzero
from nnlight.raw.dataset import RawCase, RawDataset, read_case
from nnlight.raw.dataset_json import DatasetJson
from nnlight.raw.instances import object_volumes
from nnlight.raw.io import ImageFormat
from nnlight.utils.errors import DatasetProblems, UserError
from nnlight.utils.files import atomic_write_json, load_json, to_jsonable
from nnlight.utils.parallel import map_with_progress

FOREGROUND_SAMPLE_BUDGET = 10e7  # nnU-Net's total number of sampled foreground voxels
FOREGROUND_SAMPLE_SEED = 1234
PERCENTILES = (0.5, 50.0, 99.5)


@dataclass(frozen=True)
class CaseAnalysis:
    case_id: str
    problems: list[str]
    shape_after_crop: tuple[int, ...] = ()
    spacing: tuple[float, ...] = ()
    relative_size_after_cropping: float = 0.0
    foreground_samples: list[np.ndarray] = field(default_factory=list)
    object_volumes: np.ndarray | None = None  # instance datasets: each object's volume (mm³; mm² for 2D images)
    object_dims: int = 3  # 2 for 2D images (object sizes are areas)


@dataclass(frozen=True)
class Fingerprint:
    """What the planner needs to know about a dataset; the fields are nnU-Net's fingerprint keys."""

    spacings: list[list[float]]
    shapes_after_crop: list[list[int]]
    foreground_intensity_properties_per_channel: dict[str, dict[str, float]]
    median_relative_size_after_cropping: float
    case_identifiers: list[str] | None = None
    instances: dict[str, float] | None = None  # instance datasets: object counts and sizes (instance_statistics)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "spacings": self.spacings,
            "shapes_after_crop": self.shapes_after_crop,
            "foreground_intensity_properties_per_channel": self.foreground_intensity_properties_per_channel,
            "median_relative_size_after_cropping": self.median_relative_size_after_cropping,
        }
        if self.case_identifiers is not None:
            data["case_identifiers"] = self.case_identifiers
        if self.instances is not None:
            data["instances"] = self.instances
        return to_jsonable(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "fingerprint") -> Fingerprint:
        required = ("spacings", "shapes_after_crop", "foreground_intensity_properties_per_channel",
                    "median_relative_size_after_cropping")
        missing = [k for k in required if k not in data]
        if missing:
            raise UserError(f"{where}: not a dataset fingerprint (missing {', '.join(missing)}); pass nnlight's "
                            "fingerprint.json or nnU-Net's dataset_fingerprint.json")
        return cls(
            spacings=[[float(s) for s in sp] for sp in data["spacings"]],
            shapes_after_crop=[[int(s) for s in sh] for sh in data["shapes_after_crop"]],
            foreground_intensity_properties_per_channel={
                str(k): {name: float(v) for name, v in stats.items()}
                for k, stats in data["foreground_intensity_properties_per_channel"].items()},
            median_relative_size_after_cropping=float(data["median_relative_size_after_cropping"]),
            case_identifiers=data.get("case_identifiers"),
            instances={str(k): float(v) for k, v in data["instances"].items()} if data.get("instances") else None,
        )

    def sha256(self) -> str:
        """Hash of the planner-relevant content, recorded in generated configs for provenance."""
        payload = json.dumps({k: v for k, v in self.to_dict().items() if k != "case_identifiers"}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


def foreground_statistics(values: np.ndarray) -> dict[str, float]:
    low, median, high = np.percentile(values, PERCENTILES)
    return {"mean": float(np.mean(values)), "median": float(median), "std": float(np.std(values)),
            "min": float(np.min(values)), "max": float(np.max(values)),
            "percentile_99_5": float(high), "percentile_00_5": float(low)}


def analyze_case(case: RawCase, dataset_json: DatasetJson, file_format: ImageFormat, num_samples: int
                 ) -> CaseAnalysis:
    """Check and analyse one case (runs in a worker process; reads each file once)."""
    problems, images, seg, geometry = read_case(case, dataset_json, file_format)
    if problems or images is None or seg is None or geometry is None:
        return CaseAnalysis(case.case_id, problems)
    dims = 2 if geometry.is_2d else 3
    volumes = object_volumes(seg, geometry.spacing, dims) if dataset_json.instance_maps else None
    # instance ids may exceed what the crop's int16 labels hold: only the foreground matters here
    cropped, seg_cropped, _ = crop_to_nonzero(images, (seg > 0).astype(np.int8) if volumes is not None else seg)
    rng = np.random.RandomState(FOREGROUND_SAMPLE_SEED)
    foreground = seg_cropped[0] > 0
    samples = []
    for channel in cropped:
        values = channel[foreground]
        samples.append(rng.choice(values, num_samples, replace=True) if values.size else values)
    return CaseAnalysis(
        case_id=case.case_id,
        problems=[],
        shape_after_crop=tuple(int(s) for s in cropped.shape[1:]),
        spacing=tuple(float(s) for s in geometry.spacing),
        relative_size_after_cropping=float(np.prod(cropped.shape[1:]) / np.prod(images.shape[1:])),
        foreground_samples=samples,
        object_volumes=volumes,
        object_dims=dims,
    )


def compute_fingerprint(dataset: RawDataset, num_workers: int = 2, known_problems: Sequence[str] = (),
                        sample_budget: float = FOREGROUND_SAMPLE_BUDGET) -> Fingerprint:
    """Check every case and compute the fingerprint; raises one error listing all problems found.

    ``known_problems`` (from the layout check) are reported together with the per-case ones.
    ``sample_budget`` is the total number of sampled foreground voxels (nnU-Net: 1e8).
    """
    if not dataset.cases:
        raise DatasetProblems(dataset.name, [*known_problems] or [f"{dataset.folder}: no usable training case"])
    num_samples = int(sample_budget // len(dataset.cases))
    worker = partial(analyze_case, dataset_json=dataset.dataset_json, file_format=dataset.image_format,
                     num_samples=num_samples)
    results = {r.case_id: r for r in map_with_progress(worker, dataset.cases, num_workers,
                                                       f"Checking + fingerprinting {dataset.name}")}
    ordered = [results[c.case_id] for c in dataset.cases]
    problems = [*known_problems, *(p for r in ordered for p in r.problems)]
    if problems:
        raise DatasetProblems(dataset.name, problems)
    properties = {}
    for channel in range(dataset.dataset_json.num_channels):
        pooled = np.concatenate([r.foreground_samples[channel] for r in ordered])
        if pooled.size == 0:
            raise DatasetProblems(dataset.name, [f"{dataset.folder / 'labelsTr'}: no case has any foreground "
                                                 "voxel (label > 0); check that the label files are not empty"])
        properties[str(channel)] = foreground_statistics(pooled)
    return Fingerprint(
        spacings=[list(r.spacing) for r in ordered],
        shapes_after_crop=[list(r.shape_after_crop) for r in ordered],
        foreground_intensity_properties_per_channel=properties,
        median_relative_size_after_cropping=float(np.median([r.relative_size_after_cropping for r in ordered])),
        case_identifiers=[r.case_id for r in ordered],
        instances=instance_statistics(ordered, dataset) if dataset.dataset_json.instance_maps else None,
    )


def instance_statistics(cases: Sequence[CaseAnalysis], dataset: RawDataset) -> dict[str, float]:
    """What planning derives the border thickness and size thresholds from: object counts and volumes."""
    volumes = np.concatenate([c.object_volumes for c in cases if c.object_volumes is not None])
    if volumes.size == 0:
        raise DatasetProblems(dataset.name, [f"{dataset.folder / 'labelsTr'}: no object in any instance map"])
    return {"dims": min(c.object_dims for c in cases),
            "objects": int(volumes.size),
            "median_objects_per_case": float(np.median([len(c.object_volumes) for c in cases
                                                        if c.object_volumes is not None])),
            "median_object_volume": float(np.median(volumes)),
            "smallest_object_volume": float(volumes.min()),
            "largest_object_volume": float(volumes.max())}


def save_fingerprint(fingerprint: Fingerprint, path: str | Path) -> None:
    atomic_write_json(path, fingerprint.to_dict())


def load_fingerprint(path: str | Path) -> Fingerprint:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: fingerprint file not found")
    try:
        data = load_json(path)
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a dataset fingerprint")
    return Fingerprint.from_dict(data, str(path))
