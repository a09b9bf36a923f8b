"""Stage `train`: one fold of one planned configuration, in the run folder that names how it was made."""

from __future__ import annotations

import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from nnlight import __version__
from nnlight.data.augmentation import AugmentationSettings
from nnlight.data.datamodule import DataSettings, SegmentationDataModule, deep_supervision_scales
from nnlight.inference.predictor import INFERENCE_FILE, InferenceSettings, num_outputs
from nnlight.pipeline.settings import settings_from_config
from nnlight.planning.plans import Architecture
from nnlight.training.checkpoint_io import AtomicCheckpointIO
from nnlight.training.task import SegmentationTask
from nnlight.training.validation import ValidationSettings, validate
from nnlight.utils.errors import UserError
from nnlight.utils.files import atomic_write, atomic_write_json
from nnlight.utils.provenance import device_name


def _overrides_suffix(override_dirname: str) -> str:
    """``[loss=dice,trainer.max_epochs=50]`` after the experiment name, or nothing without overrides.

    A multirun spells booleans as Python does (``False``), a single run as typed (``false``): both become
    lowercase so the same overrides always name the same folder.
    """
    normalized = re.sub(r"=(True|False)(?=,|$)", lambda m: "=" + m.group(1).lower(), override_dirname)
    return f"[{normalized}]" if normalized else ""


if not OmegaConf.has_resolver("nnlight_overrides"):
    OmegaConf.register_new_resolver("nnlight_overrides", _overrides_suffix)


# Config groups may only name classes from these packages: a config file cannot import arbitrary code.
ALLOWED_TARGETS = ("lightning.pytorch.loggers.", "lightning.pytorch.callbacks.", "nnlight.")


def _instantiate_group(group_cfg: DictConfig | None, group: str, **extra: Any) -> list[Any]:
    """The objects of a ``name: {_target_: ..., args}`` group (loggers, callbacks), in config order."""
    objects = []
    for name, entry in (group_cfg or {}).items():
        target = str(entry.get("_target_", ""))
        if not target.startswith(ALLOWED_TARGETS):
            raise UserError(f"{group}.{name}._target_={target!r}: only classes from {', '.join(ALLOWED_TARGETS)} "
                            "can be used here")
        try:
            objects.append(instantiate(entry, **extra))
        except (InstantiationException, ModuleNotFoundError, ImportError) as e:
            cause = e.__cause__ or e
            raise UserError(f"{group}.{name} ({target}) could not be created: {cause}. If a package is missing, "
                            "install it (pip install \"nnlight[tensorboard]\" for tensorboard, "
                            "\"nnlight[slurm]\" for the SLURM launcher)") from None
    return objects


def _on_gpu(cfg: DictConfig) -> bool:
    return torch.cuda.is_available() and cfg.trainer.accelerator != "cpu"


def _trainer_arguments(cfg: DictConfig) -> dict[str, Any]:
    """``trainer.*`` as Lightning Trainer arguments, with nnU-Net's precision default per device."""
    arguments = OmegaConf.to_container(cfg.trainer, resolve=True)
    arguments.pop("compile", None)
    if not arguments.get("precision"):
        arguments["precision"] = "16-mixed" if _on_gpu(cfg) else "32"
    return arguments


def _provenance(cfg: DictConfig) -> dict[str, Any]:
    try:
        revision = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                                  cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        revision = None
    return {"nnlight": __version__, "torch": torch.__version__, "lightning": L.__version__,
            "python": platform.python_version(), "device": device_name(),
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
            "seed": int(cfg.seed), "git_revision": revision}


def _print_summary(summary: dict[str, Any], run_dir: Path, plan: DictConfig) -> None:
    names = {str(v): k for k, v in plan.labels.items()}
    lines = [f"\nTraining done ({summary['epochs']} epochs): {run_dir}",
             f"  checkpoints: {run_dir / 'checkpoints'} (final.ckpt, best.ckpt, last.ckpt)",
             f"  curves:      {run_dir / 'progress.png'}"]
    if summary["pseudo_dice_ema"] is not None:
        lines.append(f"  pseudo Dice (EMA over epochs, validation patches): {summary['pseudo_dice_ema']:.3f}")
    if "validation_dice" in summary:
        per_label = ", ".join(f"{names.get(k, k)} {v:.3f}" for k, v in summary["validation_dice_per_label"].items())
        lines.append(f"  validation Dice: {summary['validation_dice']:.3f} (mean over labels: {per_label}) -> "
                     f"{run_dir / 'validation' / 'summary.json'}")
    lines += [f"  next: python evaluate.py dataset={plan.dataset}   (compares the trained configurations)",
              f"        python predict.py \"model='{run_dir.parent}'\" input=<images> output=<folder>"]
    print("\n".join(lines))


def run(cfg: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    plan = cfg.plan
    preprocessed_dataset = Path(cfg.paths.preprocessed) / plan.dataset
    if not (preprocessed_dataset / plan.data_identifier).is_dir():
        raise UserError(f"{preprocessed_dataset / plan.data_identifier}: no preprocessed data; run "
                        f"python plan.py dataset={plan.dataset}")
    fold = cfg.data.fold if cfg.data.fold == "all" else int(cfg.data.fold)
    _check_optimized_metric(cfg.get("optimized_metric"))
    L.seed_everything(int(cfg.seed), workers=True)
    region_based = cfg.loss.name == "dice_bce"  # one sigmoid output per region instead of a softmax over labels
    data = SegmentationDataModule(
        DataSettings(preprocessed_dataset=preprocessed_dataset, data_identifier=plan.data_identifier,
                     patch_size=list(cfg.data.patch_size), batch_size=int(cfg.data.batch_size),
                     deep_supervision_scales=deep_supervision_scales(plan.architecture.strides), fold=fold,
                     oversample_foreground=float(cfg.data.oversample_foreground),
                     iterations_per_epoch=int(cfg.data.iterations_per_epoch),
                     val_iterations_per_epoch=int(cfg.data.val_iterations_per_epoch),
                     num_workers=int(cfg.data.num_workers), seed=int(cfg.seed),
                     same_patches_every_epoch=bool(cfg.data.get("same_patches_every_epoch", False)),
                     regions=[list(v) for k, v in plan.labels.items() if k not in ("background", "ignore")]
                     if region_based else None),
        settings_from_config(AugmentationSettings, cfg.augmentation, "augmentation"))
    try:
        arch = Architecture(**OmegaConf.to_container(plan.architecture, resolve=True))
    except TypeError as e:
        raise UserError(f"plan.architecture of {plan.dataset}/{plan.configuration} is malformed ({e}); "
                        "re-run plan.py with overwrite_configs=true to regenerate it") from None
    outputs = num_outputs(plan, region_based)
    trained_mirror_axes = list(data.augmentation.mirror_axes) if data.augmentation.p_mirror > 0 else []
    task = SegmentationTask(
        arch.network, arch.network_kwargs(), input_channels=len(plan.channel_names), num_classes=outputs,
        loss=cfg.loss.name, batch_dice=bool(cfg.loss.batch_dice), ignore_label=cfg.loss.ignore_label,
        optimizer=cfg.optimizer.name, lr=float(cfg.optimizer.lr), momentum=float(cfg.optimizer.momentum),
        weight_decay=float(cfg.optimizer.weight_decay), schedule=cfg.scheduler.name,
        poly_exponent=float(cfg.scheduler.exponent), warmup_epochs=int(cfg.scheduler.warmup_epochs),
        max_epochs=int(cfg.trainer.max_epochs))

    if cfg.trainer.get("compile"):
        if _on_gpu(cfg):
            task.network.compile()  # in place: the state_dict keys (and so the checkpoints) stay the same
        else:
            print("trainer.compile=true is ignored on the CPU (compilation costs more than it saves there)")

    checkpoints = run_dir / "checkpoints"
    callbacks = [ModelCheckpoint(dirpath=checkpoints, filename="best", monitor="val/pseudo_dice_ema", mode="max",
                                 save_last=True, save_top_k=1),
                 *_instantiate_group(cfg.get("callbacks"), "callbacks")]
    loggers = _instantiate_group(cfg.get("logger"), "logger", save_dir=str(run_dir))
    try:
        trainer = L.Trainer(
            **_trainer_arguments(cfg), default_root_dir=run_dir, num_sanity_val_steps=0, callbacks=callbacks,
            reload_dataloaders_every_n_epochs=1,  # per-epoch sampling seeds: a resumed run draws the same patches
            logger=loggers or False, enable_model_summary=False, plugins=[AtomicCheckpointIO()])
    except (TypeError, ValueError) as e:
        raise UserError(f"trainer.*: {e}. See configs/trainer/default.yaml and Lightning's Trainer arguments") from None
    if trainer.is_global_zero:  # a run folder is self-contained for inference
        atomic_write_json(run_dir / "provenance.json", _provenance(cfg))
        atomic_write_json(run_dir / "plan.json", OmegaConf.to_container(plan, resolve=True))
        atomic_write_json(run_dir / INFERENCE_FILE, {"region_based": region_based, "mirror_axes": trained_mirror_axes})
        for name in ("dataset.json", "fingerprint.json", f"{plan.plans_name}.json"):
            if (preprocessed_dataset / name).is_file():
                atomic_write(run_dir / name, lambda f, n=name: f.write((preprocessed_dataset / n).read_bytes()))
    last = checkpoints / "last.ckpt"
    resume = last if last.is_file() and not cfg.trainer.get("fast_dev_run", False) else None
    if resume is not None:
        print(f"Resuming from {resume}")
    trainer.fit(task, datamodule=data, ckpt_path=resume, weights_only=True)
    if not cfg.trainer.get("fast_dev_run", False):
        trainer.save_checkpoint(checkpoints / "final.ckpt", weights_only=False)
    ema = trainer.callback_metrics.get("val/pseudo_dice_ema")
    summary = {"run_dir": str(run_dir), "epochs": trainer.current_epoch,
               "pseudo_dice_ema": float(ema) if ema is not None else None}
    if cfg.validation.enabled and not cfg.trainer.get("fast_dev_run", False) and trainer.is_global_zero:
        dataset_json = OmegaConf.load(preprocessed_dataset / "dataset.json")
        task.network.decoder.deep_supervision = False
        result = validate(task.network, data.val_cases, ValidationSettings(
            store=preprocessed_dataset / plan.data_identifier,
            raw_labels=Path(cfg.paths.raw) / plan.dataset / "labelsTr", file_ending=dataset_json.file_ending,
            labels=OmegaConf.to_container(plan.labels), ignore_label=cfg.loss.ignore_label,
            save_probabilities=bool(cfg.validation.get("save_probabilities", False)),
            inference=InferenceSettings(
                tile_size=list(plan.patch_size), num_outputs=outputs,
                transpose_backward=list(plan.transpose_backward),
                region_class_order=list(plan.regions_class_order) if region_based else None,
                mirror_axes=tuple(trained_mirror_axes) if cfg.validation.mirroring else (),
                step_size=float(cfg.validation.step_size))),
            run_dir / "validation", trainer.strategy.root_device)
        summary["validation_dice"] = result["foreground_mean"]["Dice"]
        summary["validation_dice_per_label"] = {k: v["Dice"] for k, v in result["mean"].items()}
    if trainer.is_global_zero:
        _print_summary(summary, run_dir, plan)
    return _optimized_metric(cfg, summary, trainer)


def _optimized_metric(cfg: DictConfig, summary: dict[str, Any], trainer: L.Trainer) -> float | None:
    """What a sweeper maximizes: ``validation_dice`` (end-of-training validation) or a logged metric."""
    name = cfg.get("optimized_metric")
    value = summary.get(name, trainer.callback_metrics.get(name))
    if value is None and name is not None:
        print(f"optimized_metric={name} was not computed in this run (validation disabled or a debug run)")
    return None if value is None else float(value)


def _check_optimized_metric(name: str | None) -> None:
    if name is not None and name != "validation_dice" and not name.startswith(("val/", "train/")):
        raise UserError(f"optimized_metric={name}: use validation_dice, val/pseudo_dice_ema, val/loss or "
                        "another logged val/* or train/* metric")
