"""Preprocess every case of a raw dataset for each planned configuration, in parallel and resumably."""

from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from nnlight.fingerprint import Fingerprint
from nnlight.planning.plans import ConfigurationPlan, Plans
from nnlight.planning.rules import case_preprocessing_bytes
from nnlight.preprocessing.case import PreprocessingSettings, preprocess_case
from nnlight.preprocessing.store import (
    StoreFormatName,
    border_thickness_of,
    completed_cases,
    format_of_case,
    remove_leftovers,
    store_format,
    write_case,
)
from nnlight.raw.dataset import RawCase, RawDataset
from nnlight.raw.dataset_json import DatasetJson
from nnlight.raw.instances import compact_ids
from nnlight.raw.io import ImageFormat, read_images, read_seg
from nnlight.utils.errors import UserError
from nnlight.utils.machine import available_memory_bytes, usable_cpus
from nnlight.utils.parallel import map_within_budget
from nnlight.utils.shards import Shard


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


def _preprocess_one(case: RawCase, file_format: ImageFormat, settings: PreprocessingSettings, folder: Path,
                    store: StoreFormatName = "npy", patch_size: Sequence[int] = ()) -> str:
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
    }, store_format(store), patch_size)
    return case.case_id


@dataclass(frozen=True)
class _Job:
    """One case of one configuration's store."""

    case: RawCase
    settings: PreprocessingSettings
    folder: Path
    store: StoreFormatName
    patch_size: tuple[int, ...]


def _preprocess_job(job: _Job, file_format: ImageFormat) -> str:
    return _preprocess_one(job.case, file_format, job.settings, job.folder, job.store, job.patch_size)


@dataclass(frozen=True)
class CaseEstimate:
    memory: int  # peak bytes while preprocessed
    store: int  # bytes in the uncompressed store


def case_estimates(dataset: RawDataset, plans: Plans, plan: ConfigurationPlan, fingerprint: Fingerprint | None
                   ) -> dict[str, CaseEstimate]:
    """Each case's estimated peak memory while preprocessed for ``plan`` and its size in the uncompressed store,
    from the fingerprint's cropped shapes and spacings (matched by case identifier, else by order); a fingerprint
    of other cases makes every case count as the largest it knows. Without a fingerprint nothing is estimated (0):
    the worker count alone limits what runs at once."""
    channels = dataset.dataset_json.num_channels
    forward = plans.transpose_forward

    def estimate(shape: Sequence[int], spacing: Sequence[float]) -> CaseEstimate:
        shape_t, spacing_t = [shape[a] for a in forward], [float(spacing[a]) for a in forward]
        target = list(plan.spacing) if len(plan.spacing) == len(spacing_t) else [spacing_t[0], *plan.spacing]
        resampled, memory = case_preprocessing_bytes(shape_t, spacing_t, target, channels)
        return CaseEstimate(memory, math.prod(resampled) * (4 * channels + 1))  # float32 image, int8 labels

    ids = [c.case_id for c in dataset.cases]
    if fingerprint is None:
        return dict.fromkeys(ids, CaseEstimate(0, 0))
    estimates = [estimate(shape, spacing) for shape, spacing in zip(fingerprint.shapes_after_crop,
                                                                     fingerprint.spacings, strict=True)]
    known = fingerprint.case_identifiers or (ids if len(estimates) == len(ids) else None)
    if known is not None and set(ids) <= set(known):
        by_id = dict(zip(known, estimates, strict=True))
        return {c: by_id[c] for c in ids}
    return dict.fromkeys(ids, max(estimates, key=lambda e: e.memory, default=CaseEstimate(0, 0)))


def check_disk(store_bytes: int, out_root: Path, store: StoreFormatName) -> None:
    """An uncompressed store that would not fit the free disk is refused before a case is written, proposing the
    compressed one."""
    existing = next(p for p in (out_root, *out_root.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if store == "npy" and store_bytes > free:
        raise UserError(f"the case store would take about {store_bytes / 1e9:.1f} GB uncompressed, but {existing} has "
                        f"{free / 1e9:.1f} GB free: preprocess.store=blosc2 keeps it compressed (a third to a tenth of "
                        "the size; patch reads slower, BENCHMARKS.md), or free disk space, or point "
                        "NNLIGHT_PREPROCESSED to a larger disk; nothing was written")


def default_memory_budget() -> int:
    """The memory available now, less a margin (10 %, at least 1 GiB) for everything else on the machine."""
    available = available_memory_bytes()
    return max(0, available - max(2**30, available // 10))


def preprocess_dataset(dataset: RawDataset, plans: Plans, out_root: Path, num_workers: int,
                       configurations: list[str] | None = None, fingerprint: Fingerprint | None = None,
                       memory_budget: int | None = None, shard: Shard | None = None,
                       store: StoreFormatName = "npy") -> list[PreprocessReport]:
    """Write the case store of each configuration; cases already complete are skipped (resume).

    With the fingerprint, every case's peak memory is estimated, and cases run side by side (up to
    ``num_workers``) only as far as their estimates fit ``memory_budget`` together (default: the memory available
    now, less a margin), the largest first and alone if need be; a case that cannot fit even alone is refused
    before anything is written. ``shard``: only this job's part of the cases (several jobs share one store);
    ``store``: the format cases are kept in (a case kept in the other one is written again).
    """
    chosen = store_format(store)
    budget = default_memory_budget() if memory_budget is None else memory_budget
    reports, jobs, needs = [], [], []
    store_bytes = 0
    seen: set[str] = set()
    for name, plan in plans.configurations.items():
        if (configurations and name not in configurations) or plan.inherits_from or plan.data_identifier in seen:
            continue  # the cascade reads 3d_fullres data; ResEnc presets share nnUNetPlans data
        seen.add(plan.data_identifier)
        folder = out_root / plans.dataset_name / plan.data_identifier
        remove_leftovers(folder)
        done = {c for c in completed_cases(folder) if format_of_case(folder, c) is chosen}
        if plans.instances is not None:  # labels made with another border ring are made again
            done = {c for c in done if border_thickness_of(folder, c) == plans.instances.border_thickness_mm}
        mine = [c for c in dataset.cases if shard is None or shard.contains(c.case_id)]
        todo = [c for c in mine if c.case_id not in done]
        settings = preprocessing_settings(plans, plan, dataset.dataset_json)
        case_estimate = case_estimates(dataset, plans, plan, fingerprint)
        for case in todo:
            need = case_estimate[case.case_id].memory
            store_bytes += case_estimate[case.case_id].store
            if need > budget:
                raise UserError(
                    f"{name}: case {case.case_id} needs about {need / 2**30:.1f} GiB of memory to "
                    f"preprocess, more than the budget of {budget / 2**30:.1f} GiB (preprocess.memory_gb; by default "
                    "the memory available now, less a margin). Close other programs or set preprocess.memory_gb= "
                    "to what this machine can give; nothing was written")
            jobs.append(_Job(case, settings, folder, store, tuple(plan.patch_size)))
            needs.append(need)
        reports.append(PreprocessReport(plan.data_identifier, folder, len(todo), len(mine) - len(todo)))
    check_disk(store_bytes, out_root, store)
    if jobs:
        workers = min(num_workers, len(jobs))
        largest = max(needs)
        if workers > 1 and largest:
            side_by_side = min(workers, max(1, budget // largest))
            print(f"Preprocessing {len(jobs)} case(s) with up to {workers} workers within {budget / 2**30:.1f} GiB of "
                  f"memory: the largest needs about {largest / 2**30:.1f} GiB"
                  + (" and runs alone" if side_by_side == 1 else f", {side_by_side} of them fit side by side"))
        for _ in map_within_budget(partial(_preprocess_job, file_format=dataset.image_format), jobs, needs, budget,
                                   num_workers, f"Preprocessing {', '.join(r.data_identifier for r in reports)}",
                                   threads_per_worker=max(1, usable_cpus() // max(1, workers))):
            pass
    return reports
