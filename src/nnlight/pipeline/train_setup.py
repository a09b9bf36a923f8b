"""Everything a training run needs: the parsed config (:mod:`nnlight.pipeline.train_config`) checked against the
plan's facts and the disk before anything is written.

Dataset facts come from the plan alone; a method option that contradicts them (a softmax loss on regions, a
network that cannot take the patch, a fold the splits do not have) is a ``UserError`` raised here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from nnlight.data.augmentation import check_transforms
from nnlight.data.datamodule import DataSettings, PreviousStage
from nnlight.data.splits import fold_cases, fold_count, load_or_create_splits
from nnlight.model.network import CheckedNetwork, check_network, plan_facts
from nnlight.model.pretrained import PretrainedWeights, check_fits, read_pretrained
from nnlight.pipeline.train_config import TrainConfig
from nnlight.planning.facts import DatasetFacts
from nnlight.planning.plans import Architecture, architecture_from_plan, plans_from_nnunet
from nnlight.preprocessing.store import border_thickness_of, completed_cases
from nnlight.raw.instances import InstancePlan
from nnlight.training.losses import (
    LossChoice,
    LossSettings,
    SegmentationLoss,
    check_loss,
    check_loss_fits,
)
from nnlight.training.validation import NextStage
from nnlight.utils.errors import UserError
from nnlight.utils.files import load_json
from nnlight.utils.folders import ModelFolder


@dataclass(frozen=True)
class TrainSetup:
    """The parsed config and what checking it against the plan and the disk found."""

    config: TrainConfig
    facts: DatasetFacts
    preprocessed_dataset: Path
    raw_labels: Path
    data: DataSettings  # the config's, with the patch the network trains on
    network: CheckedNetwork  # the network choice, checked by one forward pass on the training patch
    pretrained: PretrainedWeights | None = None  # init_from=: the weights training starts from
    previous_stage: PreviousStage | None = None  # the cascade: the low-res model's segmentations
    previous_stage_model: str | None = None  # that model, <configuration>/<experiment> under the dataset's results
    next_stage: NextStage | None = None  # a low-res stage: where its validation writes the cascade's input

    @property
    def fast_dev_run(self) -> bool:
        return bool(self.config.trainer.get("fast_dev_run", False))


def prepare(config: TrainConfig) -> TrainSetup:
    """Check the parsed config against the plan's facts and the disk; raises ``UserError`` naming the key and the
    fix. The run folder names the cascade's default low-res model (the same ``<experiment>[<overrides>]``) and
    where a low-res stage writes the cascade's input (its model folder)."""
    plan = config.plan
    facts = DatasetFacts.from_plan(plan)
    preprocessed = config.roots.preprocessed / facts.dataset
    if not (preprocessed / str(plan["data_identifier"])).is_dir():
        raise UserError(f"{preprocessed / plan['data_identifier']}: no preprocessed data; run "
                        f"nnlight-plan dataset={facts.dataset}")
    architecture = _architecture(plan)
    data = config.data
    check_fold(data.fold, preprocessed)
    if facts.instances is not None:
        _check_border_ring(facts.instances, preprocessed / str(plan["data_identifier"]))
    check_loss_choice(config.loss, facts, len(data.patch_size))
    network = check_network(config.network, plan_facts(plan, data.patch_size), data.batch_size)
    data = replace(data, patch_size=tuple(network.patch_size))
    dataset_results = config.roots.results / facts.dataset
    own_model = ModelFolder(config.run_folder.path.parent) if config.run_folder is not None else None
    previous_model = _previous_stage_model(config.previous_stage, facts,
                                           own_model.path.name if own_model else "baseline")
    previous = _previous_stage(dataset_results, previous_model, facts, data.fold, preprocessed,
                               str(plan["data_identifier"])) if previous_model else None
    validation = config.validation
    if validation.overlay_channel is not None and validation.overlay_channel >= facts.num_channels:
        raise UserError(f"validation.overlay_channel={validation.overlay_channel}: {facts.dataset} has channels "
                        f"0..{facts.num_channels - 1} ({', '.join(facts.channel_names)})")
    check_transforms(config.augmentation, facts.network_input_channels, data.patch_size)
    return TrainSetup(
        config=config, facts=facts, preprocessed_dataset=preprocessed,
        raw_labels=config.roots.raw / facts.dataset / "labelsTr", data=data, network=network,
        pretrained=_pretrained(config.init_from, plan, architecture, network), previous_stage=previous,
        previous_stage_model=previous_model,
        next_stage=_next_stage(plan, preprocessed, own_model) if own_model else None)


def check_loss_choice(loss: LossChoice, facts: DatasetFacts, spatial_dims: int) -> None:
    """The loss against the dataset's labels, and one call on a dummy batch."""
    if isinstance(loss, LossSettings):
        check_loss_fits(loss, facts.layout, facts.dataset)
        check_loss(SegmentationLoss(loss, facts.layout), facts.layout, spatial_dims)
    else:
        check_loss(loss.build(facts.layout), facts.layout, spatial_dims)


def _previous_stage_model(option: str | None, facts: DatasetFacts, experiment_folder: str) -> str | None:
    """The cascade's low-res model: ``previous_stage=<configuration>/<experiment>``, by default the low-res
    configuration trained with this run's experiment and overrides."""
    if option and not facts.previous_stage:
        raise UserError(f"previous_stage={option}: {facts.dataset}/{facts.configuration} is not a cascade stage; "
                        "only plan=<Dataset>/3d_cascade_fullres takes a previous stage")
    if not facts.previous_stage:
        return None
    return str(option) if option else f"{facts.previous_stage}/{experiment_folder}"


def _previous_stage(dataset_results: Path, model_name: str, facts: DatasetFacts, fold: int | str,
                    preprocessed: Path, data_identifier: str) -> PreviousStage:
    """Every case this fold trains or validates on needs its cross-validation segmentation from the low-res
    model (written by the fold that held it out); a missing one names the low-res folds to train."""
    model = ModelFolder(dataset_results / model_name)
    cases = completed_cases(preprocessed / data_identifier)
    splits = load_or_create_splits(preprocessed, cases, write=False)
    split = fold_cases(splits, "all" if fold == "all" else int(fold), cases)
    missing = sorted(c for c in {*split["train"], *split["val"]} if not model.next_stage_segmentation(c).is_file())
    if missing:
        folds = sorted({k for k, s in enumerate(splits) if set(s["val"]) & set(missing)})
        configuration = model_name.split("/")[0]
        raise UserError(
            f"{model.predicted_next_stage}: the low-res predictions of {len(missing)} case(s) are missing "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); the cascade trains on them. Train "
            f"(and validate) those low-res folds first: nnlight-train plan={facts.dataset}/{configuration} "
            f"data.fold={','.join(map(str, folds))}{' -m' if len(folds) > 1 else ''} with this run's overrides, "
            "or point previous_stage=<configuration>/<experiment> at another low-res model")
    return PreviousStage(model.predicted_next_stage, facts.previous_stage_labels)


def _next_stage(plan: dict[str, Any], preprocessed: Path, own_model: ModelFolder) -> NextStage | None:
    """A low-res stage's cascade input is written on the cascade's grid: its case store, from the plans file."""
    next_name = plan.get("next_stage")
    plans_file = preprocessed / f"{plan['plans_name']}.json"
    if not next_name or not plans_file.is_file():
        return None
    configurations = plans_from_nnunet(load_json(plans_file), str(plans_file)).configurations
    if next_name not in configurations:
        return None
    return NextStage(preprocessed / configurations[next_name].data_identifier, own_model.predicted_next_stage)


def _pretrained(source: str | None, plan: dict[str, Any], architecture: Architecture,
                network: CheckedNetwork) -> PretrainedWeights | None:
    """``init_from``'s weights, checked against the network to train (built shape-only, on the meta device)."""
    if not source:
        return None
    pretrained = read_pretrained(str(source), architecture.network)
    with torch.device("meta"):
        target = network.choice.build(network.facts)
    check_fits(pretrained, target.state_dict())
    return pretrained


def _architecture(plan: dict[str, Any]) -> Architecture:
    return architecture_from_plan(plan, f"plan.architecture of {plan.get('dataset')}/{plan.get('configuration')}")


def check_validation_labels(setup: TrainSetup) -> None:
    """The end-of-training validation scores against the raw labels: out of reach, say so before the epochs (a
    run that is only built, as the config tests do, needs no raw data)."""
    if setup.config.validation.enabled and not setup.raw_labels.is_dir():
        raise UserError(f"{setup.raw_labels}: not found; the end-of-training validation scores the fold's cases "
                        "against the raw labels. Set paths.raw (or NNLIGHT_RAW) to the folder holding "
                        f"{setup.facts.dataset}, or train with validation.enabled=false")


def _check_border_ring(instances: InstancePlan, store: Path) -> None:
    """The border-core labels in the store were made with the plan's ring (a changed plan.instances value would
    otherwise train on labels made with another one)."""
    made_with = {border_thickness_of(store, c) for c in completed_cases(store)}
    if made_with != {instances.border_thickness_mm}:
        raise UserError(f"plan.instances.border_thickness_mm={instances.border_thickness_mm:g} but the border-core "
                        f"labels in {store} were made with "
                        f"{', '.join('an unrecorded ring' if m is None else f'{m:g} mm' for m in made_with)}; a new "
                        "ring needs new labels: nnlight-plan dataset=<Dataset> planner.border_thickness_mm=<mm>")


def check_fold(fold: int | str, preprocessed_dataset: Path) -> None:
    """Before any folder is made: the fold exists in the dataset's splits (nnU-Net's 5 until a file says more)."""
    try:
        count = fold_count(preprocessed_dataset)
    except UserError:
        return  # a broken splits file is reported, with the fix, where it is read
    if fold != "all" and int(fold) >= count:
        raise UserError(f"data.fold={fold} is out of range: {preprocessed_dataset.name} has folds 0..{count - 1} "
                        "(or data.fold=all)")
