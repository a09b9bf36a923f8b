"""What nnlight-train reads from its config, parsed once (DESIGN rule 18): every group becomes its typed settings
or a checked component, Hydra's runtime facts (the run folder, the choices, the sweeper) are read with it, and
nothing after :func:`parse` reads the DictConfig. Checks that need the plan's facts or the disk (the network's dry
run, the loss against the labels, the fold, the cascade's previous stage, pretrained weights) come after, in
:func:`nnlight.pipeline.train_setup.prepare`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from omegaconf import DictConfig, OmegaConf
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from nnlight.data.augmentation import AugmentationSettings
from nnlight.data.datamodule import DataSettings
from nnlight.evaluation.metrics import metric_components
from nnlight.model.network import NetworkChoice
from nnlight.pipeline import missing_value
from nnlight.pipeline.config_values import Roots, nonfinite_value, plain, resolved_config, typed
from nnlight.pipeline.identity import run_identity
from nnlight.pipeline.run_names import LOCATION_KEYS
from nnlight.training.checkpoint_io import check_checkpoint_policy
from nnlight.training.guards import NonFiniteLossStop
from nnlight.training.images import IMAGE_LOGGERS
from nnlight.training.losses import LOSS_FACTS, CustomLoss, LossChoice, LossSettings
from nnlight.training.validation import ValidationOptions
from nnlight.utils.components import Component, component, components, planned_component
from nnlight.utils.errors import UserError
from nnlight.utils.folders import RunFolder


@dataclass(frozen=True)
class TrainConfig:
    """Everything nnlight-train reads from its config, typed and checked once."""

    plan: dict[str, Any]  # the resolved plan config (overrides included), saved as the run's plan.json
    roots: Roots
    data: DataSettings
    augmentation: AugmentationSettings
    network: NetworkChoice
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
    init_from: str | None  # the weights training starts from
    previous_stage: str | None  # the cascade's low-res model, <configuration>/<experiment>
    resolved: dict[str, Any]  # the whole config as plain values: every logger gets the recipe
    recorded: str  # the config as YAML: the run folder's .hydra/config.yaml
    overrides: list[str]  # the command line's: .hydra/overrides.yaml
    identity: dict[str, Any]  # what determines the weights: run_config.json, the hash inside each checkpoint
    run_folder: RunFolder | None = None  # None when composed outside a run (tests, benchmarks)
    debug: str | None = None  # the debug profile chosen (a debug run never takes part in model selection)
    search: str | None = None  # the hparams_search chosen
    sweeper: dict[str, Any] | None = None  # Hydra's sweeper settings (a search trial's pruner)
    choices: dict[str, str] = field(default_factory=dict)  # the option chosen in each config group (Hydra's)

    @property
    def log_file(self) -> Path | None:
        return self.run_folder.path / "train.log" if self.run_folder is not None else None


def parse(cfg: DictConfig) -> TrainConfig:
    """The training config, read once; a misspelt key, a wrong value or a class of the wrong kind is a
    ``UserError`` naming it, before anything is written (the run folder Hydra made for it is removed again)."""
    hydra = HydraConfig.get() if HydraConfig.initialized() else None
    run_folder = RunFolder(Path(hydra.runtime.output_dir)) if hydra is not None else None
    with removed_if_refused(run_folder, Path(str(cfg.paths.results))):
        values = resolved_config(cfg)
        bad = nonfinite_value(values)
        if bad:
            raise UserError(f"{bad}: not a finite number; every training value must be finite (a NaN or Inf "
                            "learning rate, weight or probability trains nothing meaningful)")
        return _typed_config(values, hydra, run_folder, OmegaConf.to_yaml(cfg))


@contextlib.contextmanager
def removed_if_refused(run_folder: RunFolder | None, results_root: Path) -> Iterator[None]:
    """A refused configuration leaves nothing behind: Hydra has already made the run folder (``.hydra/``, the
    log), so a folder holding nothing else is removed, with the now empty parents below the results root."""
    try:
        yield
    except UserError:
        folder = run_folder.path if run_folder is not None else None
        if folder is not None and run_folder is not None and folder.is_dir() and all(
                p.name in (".hydra", run_folder.lock.name) or p.suffix == ".log" for p in folder.iterdir()):
            shutil.rmtree(folder)
            while folder.parent.resolve() != results_root.resolve() and folder.parent.is_dir() and \
                    not any(folder.parent.iterdir()):
                folder = folder.parent
                folder.rmdir()
        raise


def _typed_config(values: dict[str, Any], hydra: Any, run_folder: RunFolder | None, recorded: str) -> TrainConfig:
    plan = _group(values, "plan")
    trainer, compile_network = trainer_arguments(_group(values, "trainer"))
    loggers, images_every = logger_components(values.get("logger"))
    choices = dict(hydra.runtime.choices) if hydra is not None else {}
    excluded = [str(k) for k in hydra.job.config.override_dirname.exclude_keys] if hydra is not None else []
    return TrainConfig(
        plan=plan, roots=Roots.from_values(_group(values, "paths")),
        data=typed(DataSettings, _group(values, "data"), "data"),
        augmentation=typed(AugmentationSettings, _group(values, "augmentation"), "augmentation"),
        network=NetworkChoice.from_config(_group(values, "network")),
        loss=_loss(_group(values, "loss"), bool(plan.get("batch_dice"))),
        optimizer=_optimizer(_group(values, "optimizer")), scheduler=_scheduler(_group(values, "scheduler")),
        callbacks=components(values.get("callbacks"), "callbacks", L.Callback),
        loggers=loggers, images_every_n_epochs=images_every, trainer=trainer, compile=compile_network,
        validation=typed(ValidationOptions, _group(values, "validation"), "validation"),
        metrics=metric_components(values.get("metrics")), seed=_seed(_group(values, "seed")),
        optimized_metric=_optimized_metric(values.get("optimized_metric")),
        nonfinite_loss_patience=NonFiniteLossStop(_group(values, "nonfinite_loss_patience")).patience,
        checkpoints=check_checkpoint_policy(values.get("checkpoints")),
        init_from=_optional_text(values.get("init_from")), previous_stage=_optional_text(values.get("previous_stage")),
        resolved=values, recorded=recorded,
        overrides=list(hydra.overrides.task) if hydra is not None else [],
        identity=run_identity(values, [k for k in excluded if k not in LOCATION_KEYS]),
        run_folder=run_folder,
        debug=choices.get("debug"), search=choices.get("hparams_search"),
        sweeper=plain(hydra.sweeper) if hydra is not None else None,
        choices={str(k): str(v) for k, v in choices.items() if v is not None})


def _group(values: Mapping[str, Any], key: str) -> Any:
    if key not in values:
        raise missing_value(key)
    return values[key]


def _loss(values: Mapping[str, Any], batch_dice: bool) -> LossChoice:
    """The ``loss`` group: a built-in (``name``) or a user's class (``_target_``); checked against the dataset's
    labels (and on a dummy batch) once the plan's facts are read."""
    if "_target_" not in values:
        return typed(LossSettings, values, "loss")
    builtin_keys = sorted(set(values) & set(LossSettings.__dataclass_fields__))
    if builtin_keys:
        raise UserError(f"loss: _target_ (your loss class) together with the built-in loss keys "
                        f"{', '.join(builtin_keys)}; choose loss=custom loss._target_=... or a loss YAML of your own")
    checked, from_plan = planned_component(values, "loss", torch.nn.Module, LOSS_FACTS)
    return CustomLoss(str(values["_target_"]), checked.arguments, from_plan, batch_dice)


# loggers whose package is an extra: (modules any of which serves, the extra that installs one)
LOGGER_PACKAGES = {WandbLogger: (("wandb",), "wandb"),
                   TensorBoardLogger: (("tensorboard", "tensorboardX"), "tensorboard"),
                   MLFlowLogger: (("mlflow",), "mlflow")}


def logger_components(group: Mapping[str, Any] | None) -> tuple[list[Component], int | None]:
    """The logger group's loggers, and how often they receive a picture of a validation patch: its own key
    ``images_every_n_epochs`` (null: never), refused where no chosen logger can show images."""
    entries = dict(group or {})
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


def _optimizer(values: Mapping[str, Any]) -> Component:
    optimizer = component(values, "optimizer", Optimizer)
    optimizer.create([torch.nn.Parameter(torch.zeros(1))])  # a wrong value (lr=fast) is named now, not mid-run
    return optimizer


def _scheduler(values: Mapping[str, Any]) -> Component:
    scheduler = component(values, "scheduler", LRScheduler)
    scheduler.create(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01))
    return scheduler


# Trainer arguments nnlight sets itself (build_trainer in pipeline/train.py), with why
NNLIGHT_TRAINER_ARGUMENTS = {
    "default_root_dir": "the run folder", "callbacks": "the callbacks group", "logger": "the logger group",
    "plugins": "atomic checkpoint writes", "num_sanity_val_steps": "0", "enable_model_summary": "off",
    "use_distributed_sampler": "each rank draws its own batches"}


def trainer_arguments(values: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """``trainer.*`` as Lightning Trainer arguments (nnU-Net's precision per device), and ``compile``."""
    arguments = dict(values)
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


def on_gpu(trainer: Mapping[str, Any]) -> bool:
    return torch.cuda.is_available() and trainer.get("accelerator") != "cpu"


def _seed(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise UserError(f"seed={value!r}: expected an integer")
    return value


def _optimized_metric(name: Any) -> str | None:
    if name is not None and name != "validation_dice" and not str(name).startswith(("val/", "train/")):
        raise UserError(f"optimized_metric={name}: use validation_dice, val/pseudo_dice_ema, val/loss or "
                        "another logged val/* or train/* metric")
    return None if name is None else str(name)


def _optional_text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)
