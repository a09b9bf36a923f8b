"""Every built-in network option trains a step and predicts, in 2D and 3D, on the demo plan (CPU-sized widths)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from nnlight.data.datamodule import plan_datamodule
from nnlight.inference.predictor import Predictor, TrainingChoices
from nnlight.model.network import NetworkChoice, check_network, inference_network, plan_facts
from nnlight.planning.plan_configs import configuration_values
from nnlight.raw.dataset_json import load_dataset_json
from nnlight.training.losses import LossSettings
from nnlight.training.schedules import PolyLR
from nnlight.training.task import SegmentationTask
from nnlight.utils.errors import UserError

pytestmark = pytest.mark.integration

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SMALL = {  # CPU-test widths; the YAMLs keep the published sizes
    "segresnet": ["network.init_filters=8"],
    "swinunetr": ["network.feature_size=12", "network.depths=[1,1,1,1]"],
    "unetr": ["network.hidden_size=48", "network.mlp_dim=96", "network.num_heads=4", "network.feature_size=8"],
    "dynunet": [],
    **{f"mednext_{size}{kernel}": ["network.init_filters=4"] for size in "sbml" for kernel in ("", "_k5")},
}  # network=default (the plan's U-Net) trains in every other training test
PATCH = {("swinunetr", "2d"): [64, 32], ("swinunetr", "3d_fullres"): [32, 32, 64]}  # more than 1 voxel at 1/32


def _choice(option: str, *overrides: str) -> NetworkChoice:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(overrides=[f"+network={option}", "network.adapt_patch=true", *overrides])
    return NetworkChoice.from_config(OmegaConf.to_container(cfg.network, resolve=True))


@pytest.mark.parametrize("configuration", ["2d", "3d_fullres"])
@pytest.mark.parametrize("option", sorted(SMALL))
def test_each_network_option_trains_and_predicts(preprocessed, option: str, configuration: str, tmp_path) -> None:
    pytest.importorskip("monai", reason='pip install "nnlight[monai]"')
    folder, plans = preprocessed
    conf = plans.configurations[configuration]
    if (option, configuration) in PATCH:
        conf = dataclasses.replace(conf, patch_size=PATCH[option, configuration])
    plan = configuration_values(plans, conf, load_dataset_json(folder / "dataset.json"))
    checked = check_network(_choice(option, *SMALL[option]), plan_facts(plan, conf.patch_size))
    conf = dataclasses.replace(conf, patch_size=checked.patch_size)
    data = plan_datamodule(folder, conf, iterations_per_epoch=1)
    data.deep_supervision_scales = checked.deep_supervision_scales or [[1.0] * len(conf.patch_size)]
    task = SegmentationTask(checked, data.layout, LossSettings(batch_dice=conf.batch_dice),
                            torch.optim.SGD, lambda o: PolyLR(o, max_epochs=1))
    L.Trainer(max_epochs=1, limit_val_batches=1, accelerator="cpu", logger=False, enable_checkpointing=False,
              enable_progress_bar=False, default_root_dir=tmp_path).fit(task, datamodule=data)
    weights = task.network.state_dict()
    network = inference_network(checked.choice, plan, checked.patch_size, weights, "test")
    predictor = Predictor([network], plan, TrainingChoices(checked.patch_size, (), checked.choice), mirroring=False,
                          device=torch.device("cpu"))
    image = np.random.default_rng(0).normal(size=(2, 12, 30, 26)).astype(np.float32)
    segmentation = predictor.predict(image, (3.0, 1.0, 1.0)).segmentation
    assert segmentation.shape == (12, 30, 26)
    assert set(np.unique(segmentation)) <= {0, 1, 2}


def test_a_network_that_returns_the_wrong_shape_is_named_with_the_shape(preprocessed) -> None:
    folder, plans = preprocessed
    plan = configuration_values(plans, plans.configurations["2d"], load_dataset_json(folder / "dataset.json"))
    facts = plan_facts(plan, plans.configurations["2d"].patch_size)
    wrong = _choice("custom", "network._target_=torch.nn.Identity")
    with pytest.raises(UserError, match=r"network \(torch\.nn\.Identity\) returned shape \[2, 2, .*expected \[2, 3, "):
        check_network(wrong, facts)


def test_a_missing_input_and_a_fact_given_as_an_option_are_refused() -> None:
    with pytest.raises(UserError, match=r"SegResNet has no argument\(s\) wrong_name"):
        _choice("segresnet", "+network.wrong_name=1")
    with pytest.raises(UserError, match=r"network: UNETR needs img_size: give network\.img_size=\.\.\. or take it "
                                        r"from the plan"):
        NetworkChoice.from_config({"_target_": "monai.networks.nets.UNETR",
                                   "from_plan": {"in_channels": "input_channels", "out_channels": "num_classes"}})
    with pytest.raises(UserError, match=r"network\.in_channels: comes from the plan \(a dataset fact\)"):
        _choice("segresnet", "+network.in_channels=4")


def test_a_patch_the_network_cannot_take_names_the_nearest_valid_one(preprocessed) -> None:
    folder, plans = preprocessed
    conf = dataclasses.replace(plans.configurations["2d"], patch_size=[40, 24])
    plan = configuration_values(plans, conf, load_dataset_json(folder / "dataset.json"))
    choice = _choice("mednext_s", "network.adapt_patch=false")
    with pytest.raises(UserError, match=r"needs a patch divisible by \[16, 16\].*Nearest valid patch: \[48, 32\]"):
        check_network(choice, plan_facts(plan, conf.patch_size))
    adapted = check_network(_choice("mednext_s", "network.init_filters=4"), plan_facts(plan, conf.patch_size))
    assert adapted.patch_size == [48, 32] and adapted.adapted_from == [40, 24]
    assert adapted.outputs == 5 and adapted.deep_supervision_scales[1] == [0.5, 0.5]
