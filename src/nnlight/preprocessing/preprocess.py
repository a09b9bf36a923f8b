"""Preprocess every case of a raw dataset for each planned configuration, in parallel and resumably."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from nnlight.planning.plans import ConfigurationPlan, Plans
from nnlight.preprocessing.case import PreprocessingSettings, preprocess_case
from nnlight.preprocessing.store import border_thickness_of, completed_cases, remove_leftovers, write_case
from nnlight.raw.dataset import RawCase, RawDataset
from nnlight.raw.dataset_json import DatasetJson
from nnlight.raw.instances import compact_ids
from nnlight.raw.io import ImageFormat, read_images, read_seg
from nnlight.utils.parallel import map_with_progress


@dataclass(frozen=True)
class PreprocessReport:
    data_identifier: str
    folder: Path
    done: int
    skipped: int


def preprocessing_settings(plans: Plans, plan: ConfigurationPlan, dataset_json: DatasetJson
                           ) -> PreprocessingSettings:
    return PreprocessingSettings(
        transpose_forward=plans.transpose_forward,
        target_spacing=plan.spacing,
        normalization_schemes=plan.normalization_schemes,
        use_mask_for_norm=plan.use_mask_for_norm,
        intensity_properties=plans.foreground_intensity_properties_per_channel,
        force_separate_z=plan.resampling_data.get("force_separate_z"),
        order_data=int(plan.resampling_data.get("order", 3)),
        order_z_data=int(plan.resampling_data.get("order_z", 0)),
        foreground_classes=dataset_json.layout.sampling_classes,
        instances=plans.instances,
    )


def _preprocess_one(case: RawCase, file_format: ImageFormat, settings: PreprocessingSettings, folder: Path) -> str:
    images, geometry = read_images(case.image_files, file_format)
    seg, _ = read_seg(case.label_file, file_format)
    if settings.instances is not None:  # object ids as 1..N: an id beyond int32 (uint64, 1e12) keeps its object
        seg = compact_ids(seg)
    result = preprocess_case(images, seg, geometry.spacing, settings)
    write_case(folder, case.case_id, result, {
        "case_id": case.case_id,
        "original_spacing": list(geometry.spacing),
        "sitk_spacing": list(geometry.sitk_spacing),
        "sitk_origin": list(geometry.sitk_origin),
        "sitk_direction": list(geometry.sitk_direction),
        "is_2d": geometry.is_2d,
    })
    return case.case_id


def preprocess_dataset(dataset: RawDataset, plans: Plans, out_root: Path, num_workers: int,
                       configurations: list[str] | None = None) -> list[PreprocessReport]:
    """Write the case store of each configuration; cases already complete are skipped (resume)."""
    reports = []
    seen: set[str] = set()
    for name, plan in plans.configurations.items():
        if (configurations and name not in configurations) or plan.inherits_from or plan.data_identifier in seen:
            continue  # the cascade reads 3d_fullres data; ResEnc presets share nnUNetPlans data
        seen.add(plan.data_identifier)
        folder = out_root / plans.dataset_name / plan.data_identifier
        remove_leftovers(folder)
        done = set(completed_cases(folder))
        if plans.instances is not None:  # labels made with another border ring are made again
            done = {c for c in done if border_thickness_of(folder, c) == plans.instances.border_thickness_mm}
        todo = [c for c in dataset.cases if c.case_id not in done]
        worker = partial(_preprocess_one, file_format=dataset.image_format,
                         settings=preprocessing_settings(plans, plan, dataset.dataset_json), folder=folder)
        for _ in map_with_progress(worker, todo, num_workers, f"Preprocessing {name}"):
            pass
        reports.append(PreprocessReport(plan.data_identifier, folder, len(todo), len(done)))
    return reports
