"""nnU-Net trained model folders read by nnlight, built here from the name mapping (no nnU-Net install needed)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from nnlight.exchange.nnunet import NNUNET_TRAINERS, load_nnunet_model, nnunet_model_and_folds
from nnlight.model.network import plan_facts, plan_unet
from nnlight.nets.nnunet_names import to_nnunet_state_dict
from nnlight.planning import plans_to_nnunet
from nnlight.planning.plan_configs import configuration_values
from nnlight.raw.dataset_json import load_dataset_json
from nnlight.utils.errors import UserError
from nnlight.utils.files import atomic_write_json, load_json

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _nnunet_folder(tmp_path: Path, preprocessed, trainer: str = "nnUNetTrainer", norm: str = "instance",
                   extra: dict | None = None) -> tuple[Path, torch.nn.Module]:
    """A trained-model folder as nnU-Net 2.8.1 writes it, with random weights of the demo's 3d_fullres plan."""
    dataset_folder, plans = preprocessed
    dataset_json = load_json(dataset_folder / "dataset.json")
    plan = configuration_values(plans, plans.configurations["3d_fullres"],
                                load_dataset_json(dataset_folder / "dataset.json"))
    torch.manual_seed(0)
    network = plan_unet(norm).build(plan_facts(plan, plan["patch_size"]), inference=True).eval()
    folder = tmp_path / f"{trainer}__nnUNetPlans__3d_fullres"
    atomic_write_json(folder / "plans.json", plans_to_nnunet(plans))
    atomic_write_json(folder / "dataset.json", dataset_json)
    checkpoint = {
        "network_weights": to_nnunet_state_dict(network.state_dict(), plan["architecture"]["network"]),
        "optimizer_state": {"state": {}, "param_groups": [{"lr": 0.01, "momentum": 0.99}]},
        "grad_scaler_state": None,
        "logging": {"mean_fg_dice": [np.float64(0.5)], "ema_fg_dice": [np.float32(0.4)], "lrs": [0.01]},
        "_best_ema": np.float32(0.4), "current_epoch": 1,
        "init_args": {"plans": plans_to_nnunet(plans), "configuration": "3d_fullres", "fold": 0,
                      "dataset_json": dataset_json, "device": torch.device("cpu")},
        "trainer_name": trainer, "inference_allowed_mirroring_axes": (0, 1, 2), **(extra or {})}
    (folder / "fold_0").mkdir()
    torch.save(checkpoint, folder / "fold_0" / "checkpoint_final.pth")
    return folder, network


def test_an_nnunet_model_predicts_with_its_own_weights(tmp_path: Path, preprocessed) -> None:
    folder, network = _nnunet_folder(tmp_path, preprocessed)
    assert nnunet_model_and_folds(folder / "fold_0", None) == (folder, ["0"])
    model = load_nnunet_model(folder)
    assert model.choices.mirror_axes == (0, 1, 2) and model.choices.tile_size == model.plan["patch_size"]
    x = torch.randn(1, 2, *model.plan["patch_size"])
    with torch.no_grad():
        assert torch.equal(model.networks[0](x), network(x))


def test_batch_norm_trainer_builds_batch_norm(tmp_path: Path, preprocessed) -> None:
    folder, _ = _nnunet_folder(tmp_path, preprocessed, trainer="nnUNetTrainerBN", norm="batch")
    model = load_nnunet_model(folder)
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in model.networks[0].modules())


def test_a_custom_trainer_whose_weights_fit_the_plan_is_predicted_saying_so(
        tmp_path: Path, preprocessed, capsys: pytest.CaptureFixture[str]) -> None:
    """The most common nnU-Net practice: a subclass that only changes the epochs. Its weights fit the planned
    network exactly, so it is read (and says which trainer it was taken for)."""
    folder, network = _nnunet_folder(tmp_path, preprocessed, trainer="MyTrainer_300epochs")
    model = load_nnunet_model(folder)
    assert model.trainer == "nnUNetTrainer" and "MyTrainer_300epochs, which nnlight does not know" in \
        capsys.readouterr().out
    x = torch.randn(1, 2, *model.plan["patch_size"])
    with torch.no_grad():
        assert torch.equal(model.networks[0](x), network(x))
    bn_folder, _ = _nnunet_folder(tmp_path / "bn", preprocessed, trainer="MyBNTrainer", norm="batch")
    assert load_nnunet_model(bn_folder).trainer == "nnUNetTrainerBN"  # found from the weights, too
    capsys.readouterr()
    stated = load_nnunet_model(bn_folder, trainer="nnUNetTrainerBN")
    assert stated.trainer == "nnUNetTrainerBN" and "does not know" not in capsys.readouterr().out
    with pytest.raises(UserError, match="nnunet_trainer=nnUNetTrainerFoo: not a trainer nnlight knows"):
        load_nnunet_model(folder, trainer="nnUNetTrainerFoo")


def test_a_custom_trainer_that_changes_the_network_is_refused_by_name(tmp_path: Path, preprocessed) -> None:
    folder, _ = _nnunet_folder(tmp_path, preprocessed, trainer="nnUNetTrainerMedNeXt")
    checkpoint = torch.load(folder / "fold_0" / "checkpoint_final.pth", weights_only=False)
    checkpoint["network_weights"] = {k: v for k, v in checkpoint["network_weights"].items() if "seg_layers" not in k}
    torch.save(checkpoint, folder / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(UserError, match="nnUNetTrainerMedNeXt, which nnlight does not know, and its weights fit no"):
        load_nnunet_model(folder)


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c.update(patch_size=[100000, 32, 32]), "patch_size [100000, 32, 32]: each axis 1 to"),
    (lambda c: c.update(spacing=[0.0, 1.0, 1.0]), "spacing [0.0, 1.0, 1.0]: every axis must be a positive"),
    (lambda c: c["architecture"]["arch_kwargs"].update(n_stages=50), "n_stages=50: use 1 to 16"),
    (lambda c: c["architecture"]["arch_kwargs"].update(n_stages=6), "features_per_stage has 3 entries for n_stages=6"),
    (lambda c: c["architecture"]["arch_kwargs"].update(nonlin="torch.nn.GELU"), "nonlin='torch.nn.GELU' is not "
                                                                                "what nnlight's networks build"),
    (lambda c: c["architecture"]["arch_kwargs"].update(conv_op="torch.nn.Conv2d"), "conv_op='torch.nn.Conv2d'"),
])
def test_an_absurd_plans_file_is_refused_naming_the_value(tmp_path: Path, preprocessed, change, message) -> None:
    folder, _ = _nnunet_folder(tmp_path, preprocessed)
    plans = load_json(folder / "plans.json")
    change(plans["configurations"]["3d_fullres"])
    atomic_write_json(folder / "plans.json", plans)
    with pytest.raises(UserError, match=re.escape(message)):
        load_nnunet_model(folder)


def test_a_checkpoint_with_pickled_code_is_refused_without_running_it(tmp_path: Path, preprocessed) -> None:
    folder, _ = _nnunet_folder(tmp_path, preprocessed, extra={"callback": os.getcwd})
    with pytest.raises(UserError, match=r"contains Python code or objects .*getcwd.*did not load it"):
        load_nnunet_model(folder)


def test_nnunet_postprocessing_json_becomes_rules(tmp_path: Path, preprocessed) -> None:
    folder, _ = _nnunet_folder(tmp_path, preprocessed)
    atomic_write_json(folder / "crossval_results_folds_0_1_2_3_4" / "postprocessing.json", {
        "postprocessing_fns": ["remove_all_but_largest_component_from_segmentation"] * 2,
        "postprocessing_kwargs": [{"labels_or_regions": [1, 2]}, {"labels_or_regions": 2}]})
    rules = load_nnunet_model(folder).postprocessing
    assert rules is not None and rules.keep_largest_foreground and rules.keep_largest_per_label == [2]


def test_the_trainers_nnlight_reads_are_its_experiments() -> None:
    experiments = {p.stem for p in (REPO / "configs" / "experiment").glob("*.yaml")} - {"baseline"}
    assert set(NNUNET_TRAINERS) == experiments | {"nnUNetTrainer"}


def test_only_the_plans_unet_exports_to_nnunet() -> None:
    from nnlight.exchange.nnunet import nnunet_trainer_name
    from nnlight.model.network import NetworkChoice

    assert nnunet_trainer_name(plan_unet("batch")) == "nnUNetTrainerBN"
    segresnet = NetworkChoice.from_config({"_target_": "torch.nn.Identity"})
    with pytest.raises(UserError, match=r"network torch\.nn\.Identity: nnU-Net has no trainer for this network"):
        nnunet_trainer_name(segresnet)
