"""Stage `train`: one fold of one planned configuration, in the run folder that names how it was made."""

from __future__ import annotations

import os
import platform
import shutil
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import MLFlowLogger, WandbLogger
from omegaconf import OmegaConf

from hydra_plugins.nnlight_optuna.search import TRIAL_ENV, make_pruner
from nnlight import __version__
from nnlight.data.augmentation import spatial_augmentation_geometry
from nnlight.data.datamodule import SegmentationDataModule
from nnlight.evaluation.folder_evaluation import EvaluationSettings, evaluate_folder
from nnlight.evaluation.metrics import metric_name
from nnlight.fingerprint import load_fingerprint
from nnlight.inference.predictor import (
    TrainingChoices,
    canonical_precision,
    inference_precision,
    inference_settings,
    with_tile_batch,
)
from nnlight.model.network import HighestResolution, trust_setting
from nnlight.model.pretrained import load_pretrained
from nnlight.pipeline.identity import config_hash
from nnlight.pipeline.run_record import (
    RunIdentity,
    check_checkpoint,
    check_same_run,
    finished_stats,
    recording_failure,
    run_hashes,
    write_run_config,
    write_stats,
)
from nnlight.pipeline.train_config import TrainConfig, on_gpu, removed_if_refused
from nnlight.pipeline.train_config import parse as parse
from nnlight.pipeline.train_setup import TrainSetup, check_validation_labels, prepare
from nnlight.raw.labels import label_key
from nnlight.training.checkpoint_io import checkpoint_plugin, keep_checkpoints, resume_checkpoint
from nnlight.training.guards import NonFiniteLossStop
from nnlight.training.images import ValidationImages
from nnlight.training.preemption import SlurmRequeue, slurm_environment
from nnlight.training.progress_bars import progress_bar
from nnlight.training.pruning import TrialPruning, per_epoch_metric
from nnlight.training.resources import ResourceMonitor
from nnlight.training.task import SegmentationTask
from nnlight.training.validation import ValidationSettings, validate
from nnlight.utils.components import Component
from nnlight.utils.errors import UserError
from nnlight.utils.files import atomic_copy, atomic_write_json, atomic_write_text, load_json
from nnlight.utils.folders import RunFolder
from nnlight.utils.names import model_argument
from nnlight.utils.provenance import device_name, source_revision
from nnlight.utils.run_log import lightning_logs_once


def run(config: TrainConfig) -> float | None:
    """Check everything, then train, validate and report — or, for a run that finished before, only report."""
    lightning_logs_once(verbose=bool(config.resolved.get("verbose", False)))
    if config.run_folder is None:
        raise UserError("nnlight-train runs under Hydra (train.py or nnlight-train): its run folder comes from there")
    run_folder = config.run_folder
    setup = _prepare_or_remove(config, run_folder)
    check_same_run(run_folder, config.identity)
    stats = None if setup.fast_dev_run else finished_stats(run_folder)
    if stats is not None:
        print(f"Already trained: {run_folder.path} (finished {stats['finished_at']}); nothing to do. To train it "
              "again, delete that folder")
        rescore_validation(setup, run_folder, stats)
        return _optimized_metric(setup.config.optimized_metric, stats["summary"], stats["logged_metrics"])
    with recording_failure(run_folder):
        return _train(setup, run_folder, _trial_pruning(config.sweeper or {}, config.optimized_metric))


def _trial_pruning(sweeper: Mapping[str, Any], optimized_metric: str | None) -> TrialPruning | None:
    """The pruning callback for a run that is a trial of a search with a pruner (``sweeper``: the run's Hydra
    sweeper settings; the sweeper names the trial in the job's environment); None for any other run."""
    trial_id = os.environ.get(TRIAL_ENV)
    if trial_id is None or not str(sweeper.get("_target_", "")).endswith(".OptunaSearch"):
        return None
    import optuna

    pruner = make_pruner(str(sweeper["pruner"]), int(sweeper["pruner_startup_trials"]),
                         int(sweeper["pruner_warmup_epochs"]))
    study = optuna.load_study(study_name=str(sweeper["study_name"]), storage=str(sweeper["storage"]), pruner=pruner)
    return TrialPruning(optuna.trial.Trial(study, int(trial_id)), per_epoch_metric(optimized_metric))


def _train(setup: TrainSetup, run_folder: RunFolder, pruning: TrialPruning | None) -> float | None:
    config = setup.config
    L.seed_everything(config.seed, workers=True)
    data, task = build_data(setup), build_task(setup)
    monitor = ResourceMonitor()
    run_hash = config_hash(config.identity)
    own_callbacks: list[L.Callback] = [monitor, RunIdentity(run_hash),
                                       NonFiniteLossStop(config.nonfinite_loss_patience)]
    if config.images_every_n_epochs:
        own_callbacks.append(ValidationImages(config.images_every_n_epochs, setup.facts.layout))
    if pruning is not None:
        own_callbacks.append(pruning)
    trainer = build_trainer(setup, run_folder, own_callbacks)
    if trainer.is_global_zero:
        print(start_line(setup, trainer, sum(p.numel() for p in task.network.parameters())), flush=True)
        write_run_files(setup, run_folder)
    for logger in trainer.loggers:  # the whole recipe (optimizer, learning rate, schedule, epochs, ...) in every logger
        logger.log_hyperparams(config.resolved)
    resumed = fit(trainer, task, data, run_folder, setup.fast_dev_run, run_hash, setup.config.checkpoints)
    logged = {str(k): float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    summary: dict[str, Any] = {"run_dir": str(run_folder.path), "epochs": trainer.current_epoch,
                               "pseudo_dice_ema": logged.get("val/pseudo_dice_ema")}
    if pruning is not None and pruning.pruned_at_epoch is not None:
        summary["pruned_at_epoch"] = pruning.pruned_at_epoch
    if trainer.is_global_zero:
        device = trainer.strategy.root_device
        started = time.perf_counter()
        if setup.config.validation.enabled:
            if setup.fast_dev_run:  # its weights are new every time: never reuse an earlier check's predictions
                shutil.rmtree(run_folder.validation, ignore_errors=True)
            summary |= validate_fold(task, data, setup, run_folder, device)
            for logger in trainer.loggers:  # the end-of-training validation scores beside the curves
                scores = {f"validation/{k}": v for k, v in summary["validation_metrics"].items() if k != "Dice"}
                logger.log_metrics({"validation/dice": summary["validation_dice"], **scores}, step=trainer.global_step)
                logger.save()
        if not setup.fast_dev_run:
            write_stats(run_folder, {
                "summary": summary, "logged_metrics": logged, "resumed": resumed, **monitor.report(device),
                "validation_seconds": round(time.perf_counter() - started, 3),
                "parameters": sum(p.numel() for p in task.network.parameters()), "device": device_name()})
        _print_summary(summary, run_folder, setup)
    return _optimized_metric(setup.config.optimized_metric, summary, logged)


def _prepare_or_remove(config: TrainConfig, run_folder: RunFolder) -> TrainSetup:
    """A refused configuration leaves nothing behind (:func:`removed_if_refused`)."""
    with removed_if_refused(run_folder, config.roots.results):
        setup = prepare(config)
        check_validation_labels(setup)
        return setup


def build_data(setup: TrainSetup) -> SegmentationDataModule:
    return SegmentationDataModule(setup.preprocessed_dataset, str(setup.config.plan["data_identifier"]), setup.data,
                                  setup.config.augmentation, setup.facts.layout, setup.facts.mask_channels,
                                  setup.network.deep_supervision_scales, setup.config.seed, setup.previous_stage)


def build_task(setup: TrainSetup) -> SegmentationTask:
    task = SegmentationTask(setup.network, setup.facts.layout, setup.config.loss, setup.config.optimizer.factory(),
                            setup.config.scheduler.factory())
    for note in setup.network.notes:
        print(f"network: {note}")
    if setup.pretrained is not None:
        fresh = load_pretrained(task.network, setup.pretrained)
        print(f"init_from: weights of {setup.pretrained.source}"
              + "".join(f"\n  {line}" for line in fresh or ["every tensor loaded"]))
    if setup.config.compile:
        if on_gpu(setup.config.trainer):
            task.network.compile()  # in place: the state_dict keys (and so the checkpoints) stay the same
        else:
            print("trainer.compile=true is ignored on the CPU (compilation costs more than it saves there)")
    return task


def start_line(setup: TrainSetup, trainer: L.Trainer, parameters: int) -> str:
    """One line that says what will be trained, where, and for how long (the first line of every training)."""
    config = setup.config

    def option(group: str) -> str:
        """The group's option; for ``custom``, the class it names."""
        choice = config.choices.get(group, "?")
        target = config.resolved.get(group, {}).get("_target_") if isinstance(config.resolved.get(group), dict) \
            else None
        return f"{choice} ({str(target).rsplit('.', 1)[-1]})" if choice == "custom" and target else choice

    network = config.network.target.rsplit(".", 1)[-1]
    budget = f"{trainer.max_epochs} epochs x {setup.data.iterations_per_epoch} iterations"
    return (f"Training {config.plan['dataset']}/{config.plan['configuration']} fold {setup.data.fold}: network "
            f"{network} ({parameters / 1e6:.2f} M parameters), loss {option('loss')}, optimizer {option('optimizer')}"
            f", augmentation {option('augmentation')}, patch {'x'.join(map(str, setup.data.patch_size))}, batch "
            f"{setup.data.batch_size}, {budget}, precision {trainer.precision}, on {trainer.strategy.root_device}")


def build_trainer(setup: TrainSetup, run_folder: RunFolder, own_callbacks: list[L.Callback]) -> L.Trainer:
    callbacks = [ModelCheckpoint(dirpath=run_folder.checkpoints, filename="best", monitor="val/pseudo_dice_ema",
                                 mode="max", save_last=True, save_top_k=1),
                 *own_callbacks, *(c.create() for c in setup.config.callbacks)]
    if setup.config.trainer.get("enable_progress_bar", True) and not any(isinstance(c, ProgressBar) for c in callbacks):
        callbacks.append(progress_bar())  # ours: Lightning would switch to rich's wherever rich is installed
    loggers = [_named_after(c, run_folder).create(save_dir=str(run_folder.path)) for c in setup.config.loggers]
    plugins: list[Any] = [checkpoint_plugin()]
    if (slurm := slurm_environment()) is not None:  # a SLURM task: requeued before its end, it resumes exactly
        plugins.append(slurm)
        callbacks.append(SlurmRequeue())
    try:
        return L.Trainer(**setup.config.trainer, default_root_dir=run_folder.path, num_sanity_val_steps=0,
                         callbacks=callbacks,
                         use_distributed_sampler=False,  # each rank draws its own batches (the data module's seeds)
                         logger=loggers or False, enable_model_summary=False, plugins=plugins)
    except (TypeError, ValueError) as e:
        raise UserError(f"trainer.*: {e}. See configs/trainer/default.yaml and Lightning's Trainer arguments") from None


def _named_after(logger: Component, run_folder: RunFolder) -> Component:
    """A tracker's run name and group (W&B's name and group, MLflow's run and experiment), where the config leaves
    them null: the run folder's own name (overrides included, ``<Dataset>/<configuration>/<experiment>[<differences>]
    /fold_<k>``), so a run reads the same everywhere."""
    folder = run_folder.path.parts[-4:]
    if issubclass(logger.cls, WandbLogger):
        names = {"name": "/".join(folder), "group": "/".join(folder[:-1])}
    elif issubclass(logger.cls, MLFlowLogger):
        names = {"run_name": "/".join(folder[2:]), "experiment_name": "/".join(folder[:2])}
    else:
        return logger
    return replace(logger, arguments={**logger.arguments,
                                      **{k: v for k, v in names.items() if logger.arguments.get(k) is None}})


def write_run_files(setup: TrainSetup, run_folder: RunFolder) -> None:
    """A run folder is self-contained for inference and says how it was made: its config (and overrides),
    plan, training choices, dataset files, provenance; whether it was a debug run or a search trial."""
    config = setup.config
    write_run_config(run_folder, config.identity, config.debug, config.search)
    atomic_write_text(run_folder.hydra_config, config.recorded)
    atomic_write_text(run_folder.hydra_overrides, OmegaConf.to_yaml(OmegaConf.create(config.overrides)))
    atomic_write_json(run_folder.provenance, _provenance(setup))
    atomic_write_json(run_folder.plan, config.plan)
    atomic_write_json(run_folder.inference, _training_choices(setup).to_json())
    copies = {run_folder.dataset_json: "dataset.json", run_folder.fingerprint: "fingerprint.json",
              run_folder.nnunet_plans(str(config.plan["plans_name"])): f"{config.plan['plans_name']}.json"}
    for target, name in copies.items():
        source = setup.preprocessed_dataset / name
        if source.is_file():
            atomic_copy(source, target)


def _training_choices(setup: TrainSetup) -> TrainingChoices:
    geometry = spatial_augmentation_geometry(setup.data.patch_size, setup.config.augmentation)
    return TrainingChoices(list(setup.data.patch_size), geometry.mirror_axes, setup.network.choice,
                           canonical_precision(setup.config.trainer["precision"]), setup.previous_stage_model,
                           setup.network.record())


def fit(trainer: L.Trainer, task: SegmentationTask, data: SegmentationDataModule, run_folder: RunFolder,
        fast_dev_run: bool, run_hash: str, checkpoints: str) -> bool:
    """Train, resuming from the newest checkpoint this run wrote when it was interrupted (``final.ckpt`` too: a
    run killed during its validation has only that left); then write ``final.ckpt`` and keep what the
    ``checkpoints`` policy asks for. True if resumed."""
    resume = None if fast_dev_run else resume_checkpoint(
        [run_folder.checkpoint("last"), run_folder.checkpoint("final"), run_folder.checkpoint("best")])
    if resume is not None:
        check_checkpoint(resume, run_hash, run_hashes(run_folder))
        print(f"Resuming from {resume}")
    trainer.fit(task, datamodule=data, ckpt_path=resume, weights_only=True)
    if not fast_dev_run:
        trainer.save_checkpoint(run_folder.checkpoint("final"), weights_only=False)
        trainer.strategy.checkpoint_io.teardown()  # written (or its error raised) before the run goes on
        if trainer.is_global_zero:
            keep_checkpoints(run_folder.checkpoint("final"), run_folder.checkpoint("best"),
                             run_folder.checkpoint("last"), checkpoints, trainer.global_step)
    return resume is not None


def validate_fold(task: SegmentationTask, data: SegmentationDataModule, setup: TrainSetup, run_folder: RunFolder,
                  device: torch.device) -> dict[str, Any]:
    """The fold's validation cases predicted (sliding window), exported in their original geometry, scored."""
    network = HighestResolution(task.network).eval()
    choices = _training_choices(setup)
    options = setup.config.validation
    scoring = _scoring(setup)
    cases = data.val_cases[:options.max_cases] if options.max_cases else data.val_cases
    result = validate(network, cases, ValidationSettings(
        store=setup.preprocessed_dataset / str(setup.config.plan["data_identifier"]), raw_labels=setup.raw_labels,
        scoring=scoring, save_probabilities=options.save_probabilities,
        inference=with_tile_batch(inference_settings(
            setup.config.plan, setup.facts.layout, choices.tile_size, choices.mirror_axes if options.mirroring else (),
            options.step_size, inference_precision("auto", choices.precision, device)),
            network, setup.facts.network_input_channels, device),
        previous_stage=setup.previous_stage, next_stage=setup.next_stage,
        overlays=run_folder.validation_overlays if options.overlays else None,
        channel_names=setup.facts.channel_names, overlay_channel=options.overlay_channel),
        run_folder.validation, device)
    return {"validation_dice": result["foreground_mean"]["Dice"],
            "validation_dice_per_label": {k: v["Dice"] for k, v in result["mean"].items()},
            "validation_metrics": dict(result["foreground_mean"])}


def _scoring(setup: TrainSetup) -> EvaluationSettings:
    options = setup.config.validation
    return EvaluationSettings(setup.facts.evaluation_labels,
                              load_json(setup.preprocessed_dataset / "dataset.json")["file_ending"],
                              setup.facts.layout.ignore_label, options.surface_metrics, options.tolerance_mm,
                              setup.config.metrics, setup.facts.instances is not None)


def rescore_validation(setup: TrainSetup, run_folder: RunFolder, stats: dict[str, Any]) -> None:
    """A finished run asked for a metric its validation did not score (an evaluation-only setting, no part of the
    run's identity): its saved validation predictions are scored again with today's settings; nothing retrains."""
    wanted = {metric_name(m) for m in setup.config.metrics}
    summary_file = run_folder.validation_summary
    if not wanted or not setup.config.validation.enabled or not summary_file.is_file():
        return
    missing = wanted - set(load_json(summary_file).get("foreground_mean", {}))
    if not missing:
        return
    summary = evaluate_folder(run_folder.validation, setup.raw_labels, _scoring(setup), allow_missing=True)
    stats["summary"]["validation_metrics"] = dict(summary["foreground_mean"])
    atomic_write_json(run_folder.stats, stats)
    print(f"{run_folder.path}: its validation predictions scored again for {', '.join(sorted(missing))} (an "
          "evaluation setting: nothing retrained)")


def _provenance(setup: TrainSetup) -> dict[str, Any]:
    fingerprint = setup.preprocessed_dataset / "fingerprint.json"
    return {"nnlight": __version__, **source_revision(), "torch": torch.__version__, "lightning": L.__version__,
            "python": platform.python_version(), "device": device_name(),
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
            "seed": setup.config.seed,
            "fingerprint_sha256": load_fingerprint(fingerprint).sha256()[:16] if fingerprint.is_file() else None}


def _print_summary(summary: dict[str, Any], run_folder: RunFolder, setup: TrainSetup) -> None:
    names = {label_key(v): k for k, v in setup.facts.evaluation_labels.items()}
    dataset = setup.facts.dataset
    kept = ", ".join(sorted(p.name for p in run_folder.checkpoints.glob("*.ckpt")))
    lines = [f"\nTraining done ({summary['epochs']} epochs): {run_folder.path}",
             f"  checkpoints: {run_folder.checkpoints} ({kept}; checkpoints={setup.config.checkpoints})",
             f"  curves:      {run_folder.progress_plot}"]
    if summary["pseudo_dice_ema"] is not None:
        lines.append(f"  pseudo Dice (EMA over epochs, validation patches): {summary['pseudo_dice_ema']:.3f}")
    if "validation_dice" in summary:
        per_label = ", ".join(f"{names.get(k, k)} {v:.3f}" for k, v in summary["validation_dice_per_label"].items())
        lines.append(f"  validation Dice: {summary['validation_dice']:.3f} (mean over labels: {per_label}) -> "
                     f"{run_folder.validation_summary}")
        scores = summary["validation_metrics"]
        if "SEG" in scores:
            lines.append(f"  objects: SEG {scores['SEG']:.3f}, F1 {scores['F1']:.3f}, PQ {scores['PQ']:.3f}, "
                         f"adapted Rand error {scores['ARE']:.3f}, VI {scores['VI']:.3f}")
        if setup.config.validation.overlays:
            lines.append(f"  pictures:    {run_folder.validation_overlays}/<case>.png (image | label | prediction)")
    lines += [f"  next: nnlight-evaluate dataset={dataset}   (compares the trained configurations)",
              f"        nnlight-predict {model_argument(run_folder.path.parent)} input=<images> output=<folder>"
              f"{trust_setting([setup.network.choice.target])}"]
    print("\n".join(lines))


def _optimized_metric(name: str | None, summary: dict[str, Any], logged: dict[str, float]) -> float | None:
    """What a sweeper maximizes: ``validation_dice`` (end-of-training validation) or a logged metric."""
    value = summary.get(name, logged.get(name)) if name else None
    if value is None and name is not None:
        print(f"optimized_metric={name} was not computed in this run (validation disabled or a debug run)")
    return None if value is None else float(value)
