"""Everything a training run needs, read from the config and checked before anything is written.

Each config group becomes its typed settings object; dataset facts come from the plan alone; a method option
that contradicts them, an unknown name or key, or a wrong value is a ``UserError`` raised here.
"""

from __future__ import annotations

import importlib.util
import inspect
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from omegaconf import DictConfig
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from nnlight.data.augmentation import AugmentationSettings, check_transforms
from nnlight.data.datamodule import DataSettings, PreviousStage
from nnlight.data.splits import fold_cases, fold_count, load_or_create_splits
from nnlight.evaluation.metrics import metric_components
from nnlight.model.network import CheckedNetwork, NetworkChoice, check_network, plan_facts
from nnlight.model.pretrained import PretrainedWeights, check_fits, read_pretrained
from nnlight.pipeline.config_values import check_finite_values, plain, settings_from_config
from nnlight.planning.facts import DatasetFacts
from nnlight.planning.plans import Architecture, architecture_from_plan, plans_from_nnunet
from nnlight.preprocessing.store import border_thickness_of, completed_cases
from nnlight.raw.instances import InstancePlan
from nnlight.training.checkpoint_io import check_checkpoint_policy
from nnlight.training.guards import NonFiniteLossStop
from nnlight.training.images import IMAGE_LOGGERS
from nnlight.training.losses import (
    LOSS_FACTS,
    CustomLoss,
    LossChoice,
    LossSettings,
    SegmentationLoss,
    check_loss,
    check_loss_fits,
)
from nnlight.training.validation import NextStage, ValidationOptions
from nnlight.utils.components import Component, component, components, planned_component
from nnlight.utils.errors import UserError
from nnlight.utils.files import load_json
from nnlight.utils.folders import ModelFolder


@dataclass(frozen=True)
class TrainSetup:
    plan: dict[str, Any]  # the resolved plan config (overrides included), saved as the run's plan.json
    facts: DatasetFacts
    preprocessed_dataset: Path
    raw_labels: Path
    data: DataSettings
    augmentation: AugmentationSettings
    network: CheckedNetwork  # the network choice, checked by one forward pass on the training patch
    loss: LossChoice
    optimizer: Component
    scheduler: Component
    callbacks: list[Component]
    loggers: list[Component]
    images_every_n_epochs: int | None  # a validation patch's picture to the image loggers every N epochs
    trainer: dict[str, Any]  # Lightning Trainer arguments
    compile: bool
    validation: ValidationOptions
    metrics: tuple[Component, ...]  # a user's per-case scores (CaseMetric classes) beside Dice/IoU/HD95/NSD
    seed: int
    optimized_metric: str | None
    nonfinite_loss_patience: int  # training steps in a row with a NaN/Inf loss that stop the run
    checkpoints: str  # what the run folder keeps once training ends: final | best_and_final | all
    pretrained: PretrainedWeights | None = None  # init_from=: the weights training starts from
    previous_stage: PreviousStage | None = None  # the cascade: the low-res model's segmentations
    previous_stage_model: str | None = None  # that model, <configuration>/<experiment> under the dataset's results
    next_stage: NextStage | None = None  # a low-res stage: where its validation writes the cascade's input

    @property
    def fast_dev_run(self) -> bool:
        return bool(self.trainer.get("fast_dev_run", False))


def prepare(cfg: DictConfig, run_folder: Path | None = None) -> TrainSetup:
    """Read and check every group; raises ``UserError`` naming the key and the fix. ``run_folder`` names the
    cascade's default low-res model (the same ``<experiment>[<overrides>]``) and where a low-res stage writes the
    cascade's input (its model folder)."""
    check_finite_values(cfg)
    plan = plain(cfg.plan)
    facts = DatasetFacts.from_plan(plan)
    preprocessed = Path(cfg.paths.preprocessed) / facts.dataset
    if not (preprocessed / str(plan["data_identifier"])).is_dir():
        raise UserError(f"{preprocessed / plan['data_identifier']}: no preprocessed data; run "
                        f"nnlight-plan dataset={facts.dataset}")
    architecture = _architecture(plan)
    data = settings_from_config(DataSettings, cfg.data, "data")
    check_fold(data.fold, preprocessed)
    if facts.instances is not None:
        _check_border_ring(facts.instances, preprocessed / str(plan["data_identifier"]))
    loss = _loss(cfg.loss, facts, bool(plan["batch_dice"]), len(data.patch_size))
    trainer, compile_network = trainer_arguments(cfg.trainer)
    network = check_network(NetworkChoice.from_config(plain(cfg.network)), plan_facts(plan, data.patch_size),
                            data.batch_size)
    data = replace(data, patch_size=tuple(network.patch_size))
    dataset_results = Path(cfg.paths.results) / facts.dataset
    own_model = ModelFolder(run_folder.parent) if run_folder is not None else None
    previous_model = _previous_stage_model(cfg.get("previous_stage"), facts,
                                           own_model.path.name if own_model else "baseline")
    previous = _previous_stage(dataset_results, previous_model, facts, data.fold, preprocessed,
                               str(plan["data_identifier"])) if previous_model else None
    loggers, images_every = logger_components(cfg.get("logger"))
    augmentation = settings_from_config(AugmentationSettings, cfg.augmentation, "augmentation")
    validation = settings_from_config(ValidationOptions, cfg.validation, "validation")
    if validation.overlay_channel is not None and validation.overlay_channel >= facts.num_channels:
        raise UserError(f"validation.overlay_channel={validation.overlay_channel}: {facts.dataset} has channels "
                        f"0..{facts.num_channels - 1} ({', '.join(facts.channel_names)})")
    check_transforms(augmentation, facts.network_input_channels, data.patch_size)
    return TrainSetup(
        plan=plan, facts=facts, preprocessed_dataset=preprocessed,
        raw_labels=Path(cfg.paths.raw) / facts.dataset / "labelsTr", data=data,
        augmentation=augmentation,
        network=network, loss=loss,
        optimizer=_optimizer(cfg.optimizer), scheduler=_scheduler(cfg.scheduler),
        callbacks=components(plain(cfg.get("callbacks")), "callbacks", L.Callback),
        loggers=loggers, images_every_n_epochs=images_every, trainer=trainer, compile=compile_network,
        validation=validation,
        metrics=metric_components(plain(cfg.get("metrics"))), seed=_seed(cfg.seed),
        optimized_metric=_optimized_metric(cfg.get("optimized_metric")),
        nonfinite_loss_patience=NonFiniteLossStop(cfg.nonfinite_loss_patience).patience,
        checkpoints=check_checkpoint_policy(cfg.get("checkpoints")),
        pretrained=_pretrained(cfg.get("init_from"), plan, architecture, network), previous_stage=previous,
        previous_stage_model=previous_model,
        next_stage=_next_stage(plan, preprocessed, own_model) if own_model else None)


def _loss(node: DictConfig, facts: DatasetFacts, batch_dice: bool, spatial_dims: int) -> LossChoice:
    """The ``loss`` group: a built-in (``name``) or a user's class (``_target_``, checked on a dummy batch)."""
    if "_target_" not in node:
        settings = settings_from_config(LossSettings, node, "loss")
        check_loss_fits(settings, facts.layout, facts.dataset)
        check_loss(SegmentationLoss(settings, facts.layout), facts.layout, spatial_dims)
        return settings
    builtin_keys = sorted(set(node) & set(LossSettings.__dataclass_fields__))
    if builtin_keys:
        raise UserError(f"loss: _target_ (your loss class) together with the built-in loss keys "
                        f"{', '.join(builtin_keys)}; choose loss=custom loss._target_=... or a loss YAML of your own")
    values = plain(node)
    checked, from_plan = planned_component(values, "loss", torch.nn.Module, LOSS_FACTS)
    custom = CustomLoss(str(values["_target_"]), checked.arguments, from_plan, batch_dice)
    check_loss(custom.build(facts.layout), facts.layout, spatial_dims)
    return custom


# loggers whose package is an extra: (modules any of which serves, the extra that installs one)
LOGGER_PACKAGES = {WandbLogger: (("wandb",), "wandb"),
                   TensorBoardLogger: (("tensorboard", "tensorboardX"), "tensorboard")}


def logger_components(group: DictConfig | None) -> tuple[list[Component], int | None]:
    """The logger group's loggers, and how often they receive a picture of a validation patch: its own key
    ``images_every_n_epochs`` (null: never), refused where no chosen logger can show images."""
    entries = plain(group)
    every = entries.pop("images_every_n_epochs", None)
    loggers = components(entries, "logger", Logger)
    for logger in loggers:
        for cls, (modules, extra) in LOGGER_PACKAGES.items():
            if issubclass(logger.cls, cls) and not any(importlib.util.find_spec(m) for m in modules):
                raise UserError(f"{logger.where} needs the {modules[0]} package, which is not installed: "
                                f'pip install "nnlight[{extra}]"')
    if every is None:
        return loggers, None
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise UserError(f"logger.images_every_n_epochs={every}: use a whole number of epochs >= 1, or null for none")
    if not any(issubclass(c.cls, IMAGE_LOGGERS) for c in loggers):
        raise UserError(f"logger.images_every_n_epochs={every}: none of the chosen loggers shows images; use "
                        "logger=tensorboard or logger=wandb")
    return loggers, every


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
    if setup.validation.enabled and not setup.raw_labels.is_dir():
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


def _optimizer(node: DictConfig) -> Component:
    optimizer = component(plain(node), "optimizer", Optimizer)
    optimizer.create([torch.nn.Parameter(torch.zeros(1))])  # a wrong value (lr=fast) is named now, not mid-run
    return optimizer


def _scheduler(node: DictConfig) -> Component:
    scheduler = component(plain(node), "scheduler", LRScheduler)
    scheduler.create(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01))
    return scheduler


# Trainer arguments nnlight sets itself (build_trainer in pipeline/train.py), with why
NNLIGHT_TRAINER_ARGUMENTS = {
    "default_root_dir": "the run folder", "callbacks": "the callbacks group", "logger": "the logger group",
    "plugins": "atomic checkpoint writes", "num_sanity_val_steps": "0", "enable_model_summary": "off",
    "use_distributed_sampler": "each rank draws its own batches"}


def trainer_arguments(node: DictConfig) -> tuple[dict[str, Any], bool]:
    """``trainer.*`` as Lightning Trainer arguments (nnU-Net's precision per device), and ``compile``."""
    arguments = plain(node)
    compile_network = bool(arguments.pop("compile", False))
    reserved = sorted(set(arguments) & set(NNLIGHT_TRAINER_ARGUMENTS))
    if reserved:
        raise UserError(f"trainer.{reserved[0]}: set by nnlight ({NNLIGHT_TRAINER_ARGUMENTS[reserved[0]]}); remove it. "
                        "Choose loggers with logger=, callbacks with callbacks=, the folder with paths.results=")
    unknown = sorted(set(arguments) - set(inspect.signature(L.Trainer).parameters))
    if unknown:
        raise UserError(f"trainer.{unknown[0]}: not a Lightning Trainer argument. See configs/trainer/default.yaml "
                        "and Lightning's Trainer documentation for the valid ones")
    if not arguments.get("precision"):
        arguments["precision"] = "16-mixed" if on_gpu(arguments) else "32"
    return arguments, compile_network


def on_gpu(trainer: dict[str, Any]) -> bool:
    return torch.cuda.is_available() and trainer.get("accelerator") != "cpu"


def _seed(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise UserError(f"seed={value!r}: expected an integer")
    return value


def _optimized_metric(name: str | None) -> str | None:
    if name is not None and name != "validation_dice" and not name.startswith(("val/", "train/")):
        raise UserError(f"optimized_metric={name}: use validation_dice, val/pseudo_dice_ema, val/loss or "
                        "another logged val/* or train/* metric")
    return name
