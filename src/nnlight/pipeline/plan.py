"""Stage `plan`: verify → fingerprint → plan → generated Hydra configs (+ nnU-Net plans JSON)."""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from omegaconf import DictConfig

from nnlight.fingerprint import Fingerprint, compute_fingerprint, load_fingerprint
from nnlight.fingerprint.fingerprint import save_fingerprint
from nnlight.pipeline.config_values import Roots, check_required, resolved_config, typed
from nnlight.planning import PlannerSettings, Plans, plan_experiment, plans_from_nnunet, plans_to_nnunet
from nnlight.planning.instance_plan import plan_instances
from nnlight.planning.plan_configs import write_plan_configs
from nnlight.planning.summary import format_summary
from nnlight.preprocessing.preprocess import preprocess_dataset
from nnlight.preprocessing.store import StoreFormatName
from nnlight.raw.dataset import open_raw_dataset
from nnlight.raw.dataset_json import DATASET_NAME_PATTERN, DatasetJson, dataset_name_problem, load_dataset_json
from nnlight.utils.errors import DatasetProblems, UserError
from nnlight.utils.files import atomic_write_json, load_json
from nnlight.utils.machine import usable_cpus
from nnlight.utils.shards import Shard

FINGERPRINT_FILE = "fingerprint.json"


@dataclasses.dataclass(frozen=True)
class PreprocessOptions:
    """plan.yaml's ``preprocess`` (``preprocess=false`` alone is short for ``preprocess.run=false``)."""

    run: bool = True
    memory_gb: float | None = None  # what preprocessing's workers may use together; None: available now less a margin
    store: StoreFormatName = "npy"  # npy: memory-mapped (fast patch reads); blosc2: compressed (a fraction of the disk)

    def __post_init__(self) -> None:
        if self.memory_gb is not None and not self.memory_gb > 0:
            raise ValueError(f"memory_gb={self.memory_gb:g}: give the GB preprocessing may use, e.g. 16, or null "
                             "(the memory available now, less a margin)")


@dataclasses.dataclass(frozen=True)
class PlanOptions:
    """plan.yaml's own values."""

    dataset: str | int  # a folder, a DatasetXXX_Name under paths.raw, or its number
    fingerprint: str | None = None
    dataset_json: str | None = None
    nnunet_plans: str | None = None
    plans_from: str | int | None = None
    num_workers: int | Literal["auto"] = "auto"
    overwrite_fingerprint: bool = False
    overwrite_configs: bool = False
    preprocess: PreprocessOptions = PreprocessOptions()
    shard: int | None = None  # with shards=N: this job preprocesses its part of the cases (the plan is shared)
    shards: int = 1
    verbose: bool = False

    @property
    def workers(self) -> int:
        """Worker processes for the fingerprint and preprocessing (auto: one per usable core)."""
        return usable_cpus() if self.num_workers == "auto" else int(self.num_workers)


@dataclasses.dataclass(frozen=True)
class PlanConfig:
    """Everything nnlight-plan reads from its config, typed and checked once."""

    options: PlanOptions
    planner: PlannerSettings
    roots: Roots
    log_file: Path | None = None  # planning prints its summary; it keeps no log


def parse(cfg: DictConfig) -> PlanConfig:
    values = resolved_config(cfg)
    check_required(values, {"dataset": "nnlight-plan dataset=Dataset101_BraTS2015Mini"})
    planner = planner_settings(values.pop("planner"))
    preprocess = values.pop("preprocess", None)
    preprocess = typed(PreprocessOptions, {"run": preprocess} if isinstance(preprocess, bool) else preprocess or {},
                       "preprocess")
    options = typed(PlanOptions, {k: v for k, v in values.items() if k != "paths"})
    if options.num_workers != "auto" and int(options.num_workers) < 0:
        raise UserError(f"num_workers={options.num_workers}: use auto, 0 (in this process) or a number of processes")
    Shard.from_values(options.shard, options.shards)  # checked here, before anything runs
    return PlanConfig(dataclasses.replace(options, preprocess=preprocess), planner, Roots.from_values(values["paths"]))


@dataclasses.dataclass(frozen=True)
class PlanResult:
    plans: Plans
    dataset_folder: Path  # <preprocessed>/<Dataset>
    config_files: list[Path]


def planner_settings(values: Mapping[str, Any]) -> PlannerSettings:
    """Typed planner settings from the ``planner`` group's values; a misspelt key or a wrong type is a clear
    error."""
    settings = typed(PlannerSettings, values, "planner")
    if settings.overwrite_target_spacing is not None and len(settings.overwrite_target_spacing) != 3:
        raise UserError("planner.overwrite_target_spacing needs three numbers, e.g. [3.0,1.0,1.0]")
    return settings


def resolve_raw_folder(dataset: str, raw_root: Path) -> Path:
    """A folder path, a ``DatasetXXX_Name`` under the raw root, or a dataset number."""
    candidate = Path(dataset).expanduser()
    if candidate.is_dir():
        return candidate.resolve()
    if DATASET_NAME_PATTERN.match(dataset):
        return raw_root / dataset
    if re.fullmatch(r"\d{1,3}", dataset):
        matches = sorted(raw_root.glob(f"Dataset{int(dataset):03d}_*")) if raw_root.is_dir() else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise UserError(f"dataset={dataset}: several folders match in {raw_root}: "
                            f"{', '.join(m.name for m in matches)}; pass the full name")
    raise UserError(f"dataset={dataset}: no such folder, and no DatasetXXX_Name of that name in {raw_root} "
                    "(set NNLIGHT_RAW or paths.raw to where your raw datasets are)")


def _dataset_json_for(given: str | None, dataset_name: str, raw_root: Path) -> DatasetJson:
    path = Path(given) if given else raw_root / dataset_name / "dataset.json"
    if not path.is_file():
        raise UserError(f"{path}: dataset.json not found; pass dataset_json=<path to the dataset's dataset.json>")
    return load_dataset_json(path)


def _name_only(dataset: str, raw_root: Path) -> str:
    """The dataset name for modes that read no image: a name, an id with a raw folder, or a folder."""
    if DATASET_NAME_PATTERN.match(dataset):
        return dataset
    name = resolve_raw_folder(dataset, raw_root).name
    if (problem := dataset_name_problem(name, f"dataset={dataset}")) is not None:
        raise UserError(problem)
    return name


def run(config: PlanConfig) -> PlanResult:
    options, settings = config.options, config.planner
    dataset = str(options.dataset)
    raw_root, preprocessed_root = config.roots.raw, config.roots.preprocessed

    if options.nnunet_plans:
        name = _name_only(dataset, raw_root)
        dataset_json = _dataset_json_for(options.dataset_json, name, raw_root)
        plans_path = Path(options.nnunet_plans)
        if not plans_path.is_file():
            raise UserError(f"nnunet_plans={plans_path}: file not found")
        plans = plans_from_nnunet(load_json(plans_path), str(plans_path))
        if plans.dataset_name != name:
            plans = dataclasses.replace(plans, dataset_name=name)
        suffix = "" if plans.plans_name == "nnUNetPlans" else f"_{plans.plans_name}"
        if dataset_json.instance_maps:
            raise UserError(f"nnunet_plans={plans_path}: {name} declares instance maps, whose border-core conversion "
                            "nnU-Net's plans do not carry; plan it from the raw dataset or its fingerprint")
        return _write_outputs(plans, dataset_json, None, preprocessed_root, suffix,
                              f"imported from {plans_path.name}", options.overwrite_configs)

    raw, new_fingerprint = None, False
    if options.fingerprint:
        name = _name_only(dataset, raw_root)
        dataset_json = _dataset_json_for(options.dataset_json, name, raw_root)
        fingerprint = load_fingerprint(options.fingerprint)
        if len(fingerprint.spacings) != dataset_json.num_training:
            raise UserError(f"fingerprint={options.fingerprint} describes {len(fingerprint.spacings)} cases but "
                            f"dataset.json says numTraining={dataset_json.num_training}; use the matching pair")
    else:
        folder = resolve_raw_folder(dataset, raw_root)
        raw, problems = open_raw_dataset(folder)
        if raw is None:
            raise DatasetProblems(folder.name, problems)
        name, dataset_json = raw.name, raw.dataset_json
        fingerprint_path = preprocessed_root / name / FINGERPRINT_FILE
        shard = Shard.from_values(options.shard, options.shards)
        if shard.count > 1 and (not fingerprint_path.is_file() or options.overwrite_fingerprint):
            raise UserError(f"shards={shard.count}: the jobs share one fingerprint and plan; make them first with "
                            f"nnlight-plan dataset={dataset} preprocess=false, then start the shards")
        if fingerprint_path.is_file() and not options.overwrite_fingerprint and not problems:
            print(f"Reusing fingerprint {fingerprint_path} (overwrite_fingerprint=true recomputes it)")
            fingerprint = load_fingerprint(fingerprint_path)
        else:
            fingerprint = compute_fingerprint(raw, options.workers, known_problems=problems)
            new_fingerprint = True

    if options.plans_from is not None:
        plans, source_file = transferred_plans(str(options.plans_from), name, dataset_json, preprocessed_root,
                                               settings.plans_name)
        suffix, provenance = f"_{plans.plans_name}", f"transferred from {source_file}"
        if dataset_json.instance_maps:  # the conversion belongs to this dataset's objects, not the source's
            instances, note = plan_instances(fingerprint, dataset_json, settings,
                                             plans.original_median_spacing_after_transp)
            plans = dataclasses.replace(plans, instances=instances, notes=[*plans.notes, note])
    else:
        plans = plan_experiment(fingerprint, dataset_json, settings, name)
        suffix, provenance = settings.config_suffix, f"fingerprint sha256:{fingerprint.sha256()[:16]}"
    if raw is not None:  # written once the plan stands: a dataset that cannot be planned leaves nothing behind
        if new_fingerprint:
            save_fingerprint(fingerprint, preprocessed_root / name / FINGERPRINT_FILE)
        atomic_write_json(preprocessed_root / name / "dataset.json", dataset_json.raw)
        raw_splits = raw.folder / "splits_final.json"
        if raw_splits.is_file() and not (preprocessed_root / name / "splits_final.json").exists():
            shutil.copyfile(raw_splits, preprocessed_root / name / "splits_final.json")
    result = _write_outputs(plans, dataset_json, fingerprint, preprocessed_root, suffix, provenance,
                            options.overwrite_configs)
    if not options.preprocess.run:
        print("Preprocessing skipped (preprocess=false)")
    elif raw is None:
        print("Preprocessing skipped: planning from a fingerprint reads no image; run nnlight-plan on the raw dataset "
              "folder to preprocess")
    else:
        memory_gb = options.preprocess.memory_gb
        for r in preprocess_dataset(raw, plans, preprocessed_root, options.workers, fingerprint=fingerprint,
                                    memory_budget=None if memory_gb is None else int(memory_gb * 2**30),
                                    shard=Shard.from_values(options.shard, options.shards),
                                    store=options.preprocess.store):
            print(f"Preprocessed {r.data_identifier}: {r.done} case(s) written, {r.skipped} already done "
                  f"-> {r.folder}")
    return result


def transferred_plans(source: str, target: str, dataset_json: DatasetJson, preprocessed_root: Path,
                      plans_name: str) -> tuple[Plans, Path]:
    """Another dataset's plans for this one (nnU-Net's ``nnUNetv2_move_plans_between_datasets``): the same
    architecture, patch, spacing and normalization (the source's CT intensity statistics too), so that a model
    pretrained on the source fits. They get their own name, ``<plans>_from_<Source>``, so the target's own plans
    and preprocessed data are never mixed with them. ``source``: a dataset name or number whose plans are under
    the preprocessed root, or a plans .json file."""
    path = Path(source).expanduser()
    if path.suffix != ".json":
        matches = [preprocessed_root / source] if DATASET_NAME_PATTERN.match(source) else \
            sorted(preprocessed_root.glob(f"Dataset{int(source):03d}_*")) if source.isdigit() else []
        path = (matches[0] if matches else preprocessed_root / source) / f"{plans_name}.json"
    if not path.is_file():
        raise UserError(f"plans_from={source}: {path} not found; plan the source dataset first (nnlight-plan "
                        f"dataset={source}), or give the path of its plans .json")
    plans = plans_from_nnunet(load_json(path), str(path))
    channels = {len(c.normalization_schemes) for c in plans.configurations.values()}
    if channels != {dataset_json.num_channels}:
        raise UserError(f"plans_from={source}: its plans normalize {sorted(channels)[0]} channel(s) but {target} has "
                        f"{dataset_json.num_channels} ({', '.join(dataset_json.channel_name_list)}); plans move "
                        "only between datasets with the same channels")
    new_name = f"{plans.plans_name}_from_{plans.dataset_name}"
    configurations = {
        n: dataclasses.replace(c, data_identifier=new_name + c.data_identifier.removeprefix(plans.plans_name),
                               notes=[f"from {plans.dataset_name}'s {plans.plans_name} (plans_from)"])
        for n, c in plans.configurations.items()}
    return dataclasses.replace(plans, dataset_name=target, plans_name=new_name, configurations=configurations), path


def _write_outputs(plans: Plans, dataset_json: DatasetJson, fingerprint: Fingerprint | None,
                   preprocessed_root: Path, suffix: str, provenance: str, overwrite_configs: bool) -> PlanResult:
    dataset_folder = preprocessed_root / plans.dataset_name
    if fingerprint is not None and not (dataset_folder / FINGERPRINT_FILE).is_file():
        save_fingerprint(fingerprint, dataset_folder / FINGERPRINT_FILE)
    atomic_write_json(dataset_folder / f"{plans.plans_name}.json", plans_to_nnunet(plans))
    files = write_plan_configs(plans, dataset_json, preprocessed_root / "configs", suffix, provenance,
                               overwrite_edited=bool(overwrite_configs))
    print(format_summary(plans, files))
    print(f"\nnnU-Net plans: {dataset_folder / (plans.plans_name + '.json')}")
    print(f"Configs:       {preprocessed_root / 'configs' / 'plan' / plans.dataset_name}/")
    kept = [f for f in files if f.status == "kept (edited)"]
    if kept:
        print(f"Kept {len(kept)} config(s) you edited: {', '.join(f.path.name for f in kept)} "
              "(overwrite_configs=true replaces them)")
    return PlanResult(plans, dataset_folder, [f.path for f in files])
