"""Trained models that move between nnU-Net v2 and nnlight.

An nnU-Net *trained model folder* (``<Trainer>__<Plans>__<configuration>/`` with ``plans.json``,
``dataset.json`` and ``fold_<k>/checkpoint_final.pth``) is read into what nnlight's predictor needs: the plan
values, the training choices (tile = the plan's patch, the mirroring axes the checkpoint allows, the
normalization the trainer used) and the networks with nnU-Net's weights. Checkpoints are read with
``weights_only=True`` plus an allow-list of the numpy scalars nnU-Net's logs hold: nothing else is unpickled.
The reverse, :func:`export_to_nnunet`, writes an nnlight configuration folder in nnU-Net's layout so that
``nnUNetv2_predict`` runs it.
"""

from __future__ import annotations

import functools
import pickle
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from nnlight.inference.postprocessing import PostprocessingRules
from nnlight.inference.predictor import TrainingChoices
from nnlight.model.network import NetworkChoice, inference_network, plan_unet
from nnlight.model.weights import CHECKPOINT_FILES, load_nnunet_checkpoint, run_network_weights
from nnlight.nets.nnunet_names import from_nnunet_state_dict, to_nnunet_state_dict
from nnlight.planning.facts import DatasetFacts
from nnlight.planning.plan_configs import configuration_from_values, configuration_values
from nnlight.planning.plans import plans_from_nnunet, plans_to_nnunet
from nnlight.raw.dataset_json import load_dataset_json
from nnlight.raw.labels import LabelLayout, LabelValue
from nnlight.utils.errors import UserError
from nnlight.utils.files import atomic_write, atomic_write_bytes, atomic_write_json, load_json
from nnlight.utils.folders import CheckpointName, ModelFolder
from nnlight.utils.names import configuration_name, dataset_name, inside

# nnU-Net 2.8.1's trainer classes whose inference network is the plan's network: nnUNetTrainer and the variants
# nnlight has as experiments (configs/experiment/<name>.yaml; a test keeps the two lists equal). Only the
# normalization differs between them at inference.
NNUNET_TRAINERS: dict[str, str] = {name: "instance" for name in (
    "nnUNetTrainer", "nnUNetTrainerAdam", "nnUNetTrainerAdam1en3", "nnUNetTrainerAdam3en4", "nnUNetTrainerAdan",
    "nnUNetTrainerAdan1en1", "nnUNetTrainerAdan1en3", "nnUNetTrainerAdan3en4", "nnUNetTrainerAdanCosAnneal",
    "nnUNetTrainerCELoss", "nnUNetTrainerCELoss_5epochs", "nnUNetTrainerCosAnneal", "nnUNetTrainerDA5",
    "nnUNetTrainerDA5Segord0", "nnUNetTrainerDA5_10epochs", "nnUNetTrainerDA5ord0", "nnUNetTrainerDiceCELoss_noSmooth",
    "nnUNetTrainerDiceLoss", "nnUNetTrainerDiceTopK10Loss", "nnUNetTrainerNoDA", "nnUNetTrainerNoDeepSupervision",
    "nnUNetTrainerNoMirroring", "nnUNetTrainerTopk10Loss", "nnUNetTrainerTopk10LossLS01", "nnUNetTrainerVanillaAdam",
    "nnUNetTrainerVanillaAdam1en3", "nnUNetTrainerVanillaAdam3en4", "nnUNetTrainer_100epochs",
    "nnUNetTrainer_10epochs", "nnUNetTrainer_1epoch", "nnUNetTrainer_2000epochs",
    "nnUNetTrainer_2000epochs_NoMirroring", "nnUNetTrainer_20epochs", "nnUNetTrainer_250epochs",
    "nnUNetTrainer_250epochs_NoMirroring", "nnUNetTrainer_4000epochs", "nnUNetTrainer_4000epochs_NoMirroring",
    "nnUNetTrainer_500epochs", "nnUNetTrainer_50epochs", "nnUNetTrainer_5epochs", "nnUNetTrainer_750epochs",
    "nnUNetTrainer_8000epochs", "nnUNetTrainer_8000epochs_NoMirroring", "nnUNetTrainer_DASegOrd0",
    "nnUNetTrainer_DASegOrd0_NoMirroring", "nnUNetTrainer_noDummy2DDA", "nnUNetTrainer_onlyMirror01",
    "nnUNetTrainer_onlyMirror01_1500ep", "nnUNetTrainer_onlyMirror01_DA5", "nnUNetTrainer_onlyMirror01_DASegOrd0",
    "nnUNetTrainer_probabilisticOversampling", "nnUNetTrainer_probabilisticOversampling_010",
    "nnUNetTrainer_probabilisticOversampling_033", "nnUNetTrainer_warmup")} | {"nnUNetTrainerBN": "batch"}
_FOLD = re.compile(r"^fold_(\d+|all)$")


def is_nnunet_model_folder(folder: Path) -> bool:
    """``plans.json`` + ``dataset.json`` + at least one ``fold_*/checkpoint_*.pth``."""
    return (folder / "plans.json").is_file() and (folder / "dataset.json").is_file() and \
        any(folder.glob("fold_*/checkpoint_*.pth"))


def nnunet_model_and_folds(folder: Path, folds: Sequence[str] | None) -> tuple[Path, Sequence[str] | None] | None:
    """(model folder, folds) when ``folder`` is an nnU-Net trained model folder or one of its ``fold_<k>``."""
    if is_nnunet_model_folder(folder):
        return folder, folds
    match = _FOLD.match(folder.name)
    if match and is_nnunet_model_folder(folder.parent):
        return folder.parent, [match.group(1)]
    return None


@dataclass(frozen=True)
class NnunetModel:
    plan: dict[str, Any]  # nnlight plan values (as a run folder's plan.json)
    choices: TrainingChoices
    networks: list[torch.nn.Module]
    fold_folders: list[Path]
    postprocessing: PostprocessingRules | None
    trainer: str  # the nnU-Net trainer nnlight predicts it as (the checkpoint's, stated, or assumed from the weights)


def _available_folds(folder: Path, checkpoint_file: str) -> list[str]:
    return sorted(p.parent.name.removeprefix("fold_") for p in folder.glob(f"fold_*/{checkpoint_file}"))


def load_nnunet_model(folder: Path, folds: Sequence[str] | None = None, checkpoint: CheckpointName = "final",
                      trainer: str | None = None) -> NnunetModel:
    """An nnU-Net trained model folder as nnlight's predictor needs it. The trainer decides the normalization:
    nnUNetTrainer and the variants nnlight has as experiments by name, ``trainer`` (a known variant) when the user
    states it, and otherwise the network whose weights fit the checkpoint exactly (a custom trainer that only changed
    epochs, say), said aloud; a network nnlight cannot repeat is refused with its name."""
    checkpoint_file = CHECKPOINT_FILES[checkpoint]
    available = _available_folds(folder, checkpoint_file)
    chosen = [str(f) for f in folds] if folds is not None else available
    missing = [f for f in chosen if f not in available]
    if missing or not chosen:
        raise UserError(f"{folder}: no fold_{missing[0] if missing else '*'}/{checkpoint_file} (folds with one: "
                        f"{available or 'none'}); choose folds=[...] from those or checkpoint=final|best|last")
    if trainer is not None and trainer not in NNUNET_TRAINERS:
        raise UserError(f"nnunet_trainer={trainer}: not a trainer nnlight knows; choose one of "
                        f"{', '.join(sorted(NNUNET_TRAINERS))}")
    states, header = [], None
    for fold in chosen:
        loaded = load_nnunet_checkpoint(folder / f"fold_{fold}" / checkpoint_file)
        header = header or loaded
        states.append(loaded["network_weights"])
    assert header is not None
    configuration = str(header.get("init_args", {}).get("configuration") or folder.name.rsplit("__", 1)[-1])
    plans = plans_from_nnunet(load_json(folder / "plans.json"), str(folder / "plans.json"))
    if configuration not in plans.configurations:
        raise UserError(f"{folder / 'plans.json'}: has no configuration {configuration!r} (the checkpoint's); "
                        f"it has {', '.join(plans.configurations)}")
    conf = plans.configurations[configuration]
    if conf.previous_stage:
        raise UserError(f"{folder}: {configuration} is a cascade stage (it needs {conf.previous_stage}'s "
                        "predictions); nnlight does not import nnU-Net cascades yet")
    plan = configuration_values(plans, conf, load_dataset_json(folder / "dataset.json"))
    axes = header.get("inference_allowed_mirroring_axes")
    mirror_axes = tuple(range(conf.dimension)) if axes is None else tuple(int(a) for a in axes)
    trained_with = str(header.get("trainer_name"))
    weights = [from_nnunet_state_dict(state, conf.architecture.network) for state in states]
    known = trainer or (trained_with if trained_with in NNUNET_TRAINERS else None)
    norms = [NNUNET_TRAINERS[known]] if known else ["instance", "batch"]
    for norm in norms:
        networks, problem = _networks(plan, plan_unet(norm), conf.patch_size, weights)
        if networks is not None:
            break
    if networks is None:
        where = f"{folder}/fold_{chosen[0]}/{checkpoint_file}"
        if known:
            raise UserError(f"{where}: its weights do not fit the network of plans.json ({problem}); nnlight reads "
                            "PlainConvUNet / ResidualEncoderUNet models of nnU-Net's default trainer family")
        raise UserError(f"{folder}: trained with {trained_with}, which nnlight does not know, and its weights fit no "
                        f"network nnlight builds from plans.json ({problem}); it changes the network, so nnlight "
                        "cannot repeat it")
    if known is None:
        print(f"{folder}: trained with {trained_with}, which nnlight does not know; every weight fits the plan's "
              f"network with {norm} norm exactly, so it is predicted as {nnunet_trainer_name(plan_unet(norm))}. "
              "State it with nnunet_trainer=<variant> if that is wrong")
    choices = TrainingChoices(list(conf.patch_size), mirror_axes, plan_unet(norm))
    return NnunetModel(plan, choices, networks, [folder / f"fold_{f}" for f in chosen], _postprocessing(folder),
                       known or nnunet_trainer_name(choices.network_choice))


def _networks(plan: dict[str, Any], choice: NetworkChoice, patch_size: Sequence[int],
              weights: Sequence[dict[str, torch.Tensor]]) -> tuple[list[torch.nn.Module] | None, str | None]:
    """One network per fold with its weights, or (None, why) when they do not fit exactly."""
    try:
        return [inference_network(choice, plan, patch_size, state, "checkpoint") for state in weights], None
    except UserError as e:
        return None, str(e).removeprefix("checkpoint: ")


def _postprocessing(folder: Path) -> PostprocessingRules | None:
    """nnU-Net's ``crossval_results_folds_*/postprocessing.json`` (function names + their labels) as nnlight's
    rules; its ``postprocessing.pkl`` (pickled functions) is never read."""
    found = sorted(folder.glob("crossval_results_folds_*/postprocessing.json"))
    if not found:
        return None
    data = load_json(found[-1])
    regions = load_dataset_json(folder / "dataset.json").has_regions
    rules = PostprocessingRules()
    for name, kwargs in zip(data.get("postprocessing_fns", []), data.get("postprocessing_kwargs", []), strict=True):
        if name != "remove_all_but_largest_component_from_segmentation":
            raise UserError(f"{found[-1]}: post-processing {name!r} is not one nnlight knows; predict with "
                            "postprocessing=false")
        target = kwargs["labels_or_regions"]
        # all foreground together is a list of labels (label models) or a list of regions (region models)
        if isinstance(target, list) and (not regions or all(isinstance(t, list) for t in target)):
            rules = replace(rules, keep_largest_foreground=True)
        else:
            value = tuple(target) if isinstance(target, list) else int(target)
            rules = replace(rules, keep_largest_per_label=[*rules.keep_largest_per_label, value])
    return rules


_NNUNET_POSTPROCESSING = ("nnunetv2.postprocessing.remove_connected_components",
                          "remove_all_but_largest_component_from_segmentation")


def _write_postprocessing(rules: PostprocessingRules, layout: LabelLayout, folder: Path) -> None:
    """The rules as nnU-Net's ``postprocessing.json`` (what nnlight reads back) and ``postprocessing.pkl`` (what
    ``nnUNetv2_apply_postprocessing -pp_pkl_file`` reads). The pickle references nnU-Net's function by name,
    written opcode by opcode: nnlight never imports nnU-Net."""
    def value(v: LabelValue) -> int | tuple[int, ...]:
        return tuple(v) if isinstance(v, tuple) else int(v)
    targets: list[Any] = [[value(v) for v in layout.foreground]] if rules.keep_largest_foreground else []
    targets += [value(v) for v in rules.keep_largest_per_label]
    kwargs = [{"labels_or_regions": t} for t in targets]
    atomic_write_json(folder / "postprocessing.json", {"postprocessing_fns": [_NNUNET_POSTPROCESSING[1]] * len(targets),
                                                        "postprocessing_kwargs": kwargs})
    marker = "__nnlight_postprocessing_function__"
    raw = pickle.dumps(([marker] * len(targets), kwargs), protocol=2)
    reference = b"c" + "\n".join(_NNUNET_POSTPROCESSING).encode() + b"\n"  # GLOBAL module\nname\n
    raw = raw.replace(b"X" + struct.pack("<I", len(marker)) + marker.encode(), reference)
    atomic_write_bytes(folder / "postprocessing.pkl", raw)


def nnunet_trainer_name(choice: NetworkChoice) -> str:
    """The nnU-Net trainer that builds this network; only the plan's U-Net has one."""
    if not choice.is_plan_unet:
        raise UserError(f"network {choice.target}: nnU-Net has no trainer for this network; only models of the plan's "
                        "U-Net (network=default) export to nnU-Net")
    return "nnUNetTrainerBN" if choice.arguments.get("norm") == "batch" else "nnUNetTrainer"


def export_to_nnunet(model: ModelFolder, results_root: Path, checkpoint: CheckpointName = "final",
                     folds: Sequence[str] | None = None, trusted_networks: Sequence[str] = ()) -> Path:
    """Write an nnlight configuration folder as nnU-Net's trained model folder
    ``<results_root>/<Dataset>/<Trainer>__<Plans>__<configuration>/``; returns it."""
    runs = model.runs() if folds is None else [model.fold(f) for f in folds]
    if not runs or not all(r.is_trained_run() for r in runs):
        raise UserError(f"{model.path}: no trained fold_* to export{'' if folds is None else f' among {folds}'}")
    plan = load_json(runs[0].plan)
    choices = TrainingChoices.load(runs[0], plan, trusted_networks)
    if choices.previous_stage:
        raise UserError(f"{model.path}: a cascade stage; exporting cascades to nnU-Net is not supported (nnU-Net "
                        "predicts them from a folder of low-res predictions, -prev_stage_predictions); export "
                        f"{choices.previous_stage} and predict it first")
    if plan.get("instances"):
        raise UserError(f"{model.path}: a model of instance maps (border-core labels turned back into objects); "
                        "nnU-Net has no instance maps, so it would write border-core labels: predict with "
                        "nnlight, or share it as an nnlight model file (nnlight-model export)")
    base_plans = runs[0].nnunet_plans(str(plan["plans_name"]))
    if not base_plans.is_file():
        raise UserError(f"{base_plans}: missing; it is copied into the run folder by train.py from plan.py's "
                        "output (re-run plan.py, then train)")
    plans = plans_from_nnunet(load_json(base_plans), str(base_plans))
    configuration = configuration_from_values(plan)
    # nnU-Net slides its plan's patch over the image: write the tile nnlight trained with
    configuration = replace(configuration, patch_size=list(choices.tile_size))
    plans = replace(plans, configurations={configuration.name: configuration})
    where = f"{runs[0].path}: plan.json"  # names from files are names, never paths
    parts = [nnunet_trainer_name(choices.network_choice), configuration_name(plans.plans_name, f"{where} plans"),
             configuration_name(configuration.name, f"{where} configuration")]
    target = results_root / dataset_name(plan["dataset"], f"{where} dataset") / "__".join(parts)
    inside(results_root, target, "the nnU-Net model folder")
    dataset_json = load_json(runs[0].dataset_json)
    nnunet_plans = plans_to_nnunet(plans)
    atomic_write_json(target / "plans.json", nnunet_plans)
    atomic_write_json(target / "dataset.json", dataset_json)
    for run in runs:
        weights = run_network_weights(run, checkpoint)
        state = {
            "network_weights": to_nnunet_state_dict(weights, configuration.architecture.network),
            "optimizer_state": None, "grad_scaler_state": None, "logging": {}, "_best_ema": None,
            "current_epoch": 0,
            "init_args": {"plans": nnunet_plans, "configuration": configuration.name,
                          "fold": int(run.fold) if run.fold.isdigit() else run.fold, "dataset_json": dataset_json},
            "trainer_name": nnunet_trainer_name(choices.network_choice),
            "inference_allowed_mirroring_axes": tuple(choices.mirror_axes),
        }
        atomic_write(target / run.path.name / CHECKPOINT_FILES["final"], functools.partial(torch.save, state))
    if model.postprocessing.is_file():
        folds_name = "_".join(r.fold for r in runs)
        _write_postprocessing(PostprocessingRules.load(model.postprocessing), DatasetFacts.from_plan(plan).layout,
                              target / f"crossval_results_folds_{folds_name}")
    return target

