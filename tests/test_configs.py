"""Every option of every config group composes and becomes its typed settings; every experiment builds a task."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from lightning.pytorch.loggers import CSVLogger
from omegaconf import DictConfig

from nnlight.data.augmentation import AugmentationSettings
from nnlight.data.datamodule import SegmentationDataModule
from nnlight.model.network import NetworkChoice, architecture_facts, check_network
from nnlight.pipeline.config_values import plain, typed
from nnlight.planning import PlannerSettings
from nnlight.planning.plans import Architecture
from nnlight.training.losses import LossSettings
from nnlight.training.task import SegmentationTask
from nnlight.utils.components import component, components
from nnlight.utils.errors import UserError

pytestmark = pytest.mark.integration

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SETTINGS = {"planner": PlannerSettings, "augmentation": AugmentationSettings}


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in SETTINGS for o in _options(g)])
def test_group_option_composes_into_settings(group: str, option: str) -> None:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(overrides=[f"+{group}={option}"])
    settings = typed(SETTINGS[group], plain(cfg[group]), group)
    assert isinstance(settings, SETTINGS[group])


def test_augmentation_presets_mean_what_they_say() -> None:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        none = compose(overrides=["+augmentation=none"]).augmentation
        no_mirror = compose(overrides=["+augmentation=no_mirroring"]).augmentation
        default = compose(overrides=["+augmentation=default", "augmentation.p_rotation=0.5"]).augmentation
    assert all(v == 0 for k, v in none.items() if k.startswith("p_") and k not in ("p_rotation_per_axis",
                                                                                  "p_synchronize_scaling",
                                                                                  "p_contrast_preserve_range"))
    assert no_mirror.p_mirror == 0 and no_mirror.p_rotation == 0.2
    settings = typed(AugmentationSettings, plain(default), "augmentation")
    assert settings.p_rotation == 0.5 and settings.scaling == (0.7, 1.4)
    # the file lists nnU-Net's values, which are also the dataclass defaults
    assert dataclasses.replace(settings, p_rotation=0.2) == AugmentationSettings()


def test_plan_config_composes_with_every_planner() -> None:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        for option in _options("planner"):
            cfg = compose("plan", overrides=["dataset=Dataset001_X", f"planner={option}"])
            assert cfg.planner.preset == option


def test_wrong_setting_and_wrong_choice_are_named() -> None:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(overrides=["+augmentation=default", "+augmentation.p_rotaton=1", "+network=default",
                                 "network.norm=group"])
    with pytest.raises(UserError, match=r"augmentation\.p_rotaton"):
        typed(AugmentationSettings, plain(cfg.augmentation), "augmentation")
    architecture = Architecture("PlainConvUNet", 2, [4, 8], [[3, 3], [3, 3]], [[1, 1], [2, 2]], [1, 1], [1])
    with pytest.raises(UserError, match=r"norm='group': choose one of instance, batch"):
        check_network(NetworkChoice.from_config(plain(cfg.network)), architecture_facts(architecture, 1, 2, [8, 8]))


@pytest.mark.parametrize("option", [o for o in _options("network") if o != "custom"])  # custom: a template
def test_every_network_option_builds_and_passes_its_check_in_2d(option: str) -> None:
    """Each network YAML (MONAI's need nnlight[monai], installed by the dev extra) composes into a checked class
    that gives (batch, classes, *patch) on a 2D patch it declares it can take."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(overrides=[f"+network={option}"])
    choice = NetworkChoice.from_config(plain(cfg.network))
    architecture = Architecture("PlainConvUNet", 3, [4, 8, 8], [[3, 3]] * 3, [[1, 1], [2, 2], [2, 2]], [1, 1, 1],
                                [1, 1])
    checked = check_network(choice, architecture_facts(architecture, 2, 3, [64, 64]))
    assert checked.patch_size == [64, 64] and checked.parameters > 0


TRAIN_GROUPS = ["data", "augmentation", "network", "loss", "optimizer", "scheduler", "trainer", "callbacks", "logger",
                "launcher", "debug"]


def _train_config(preprocessed_root: Path, *overrides: str) -> DictConfig:
    import nnlight.pipeline.run_names  # noqa: F401  (registers the run-name resolver)

    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=["plan=Dataset900_Demo/3d_fullres", f"paths.preprocessed={preprocessed_root}",
                                           *overrides], return_hydra_config=True)


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in TRAIN_GROUPS for o in _options(g)
                                               if o != "custom"])  # custom: a template for a user's _target_
def test_every_train_option_composes_with_a_generated_plan(group: str, option: str, preprocessed,
                                                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NNLIGHT_PREPROCESSED", str(preprocessed[0].parent))
    if option == "adan":
        pytest.importorskip("adan_pytorch", reason='pip install "nnlight[adan]"')
    cfg = _train_config(preprocessed[0].parent, f"{group}={option}")
    plan = preprocessed[1].configurations["3d_fullres"]
    assert cfg.data.batch_size == plan.batch_size and list(cfg.data.patch_size) == plan.patch_size
    assert cfg.loss.batch_dice == plan.batch_dice and cfg.experiment_name == "baseline"
    _instantiates(group, cfg, tmp_path)


def _instantiates(group: str, cfg: DictConfig, tmp_path: Path) -> None:
    """The group's objects are built, or accepted by what consumes them."""
    import torch
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LRScheduler

    from nnlight.pipeline.train_config import logger_components, trainer_arguments
    from nnlight.training.images import IMAGE_LOGGERS

    if group == "logger":
        chosen, images_every = logger_components(plain(cfg.logger))
        loggers = [c.create(save_dir=str(tmp_path)) for c in chosen]
        assert any(isinstance(x, CSVLogger) for x in loggers)
        assert len(loggers) == len([k for k in cfg.logger if k != "images_every_n_epochs"])
        assert images_every == (10 if any(isinstance(x, IMAGE_LOGGERS) for x in loggers) else None)
    elif group == "callbacks":
        callbacks = [c.create() for c in components(plain(cfg.callbacks), "callbacks", L.Callback)]
        assert len(callbacks) == len(cfg.callbacks) and all(isinstance(x, L.Callback) for x in callbacks)
    elif group == "trainer":
        inspect.signature(L.Trainer).bind(**trainer_arguments(plain(cfg.trainer))[0])  # every key is a Trainer argument
    elif group == "launcher":
        assert cfg.hydra.launcher._target_.startswith("hydra_plugins.hydra_submitit_launcher")
        assert cfg.hydra.launcher.submitit_folder.endswith("/.submitit/%j")
    elif group == "optimizer":
        assert isinstance(component(plain(cfg.optimizer), "optimizer", Optimizer).create([torch.nn.Parameter(
            torch.zeros(1))]), Optimizer)
    elif group == "scheduler":
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
        assert isinstance(component(plain(cfg.scheduler), "scheduler", LRScheduler).create(optimizer), LRScheduler)
    elif group == "loss":
        assert isinstance(typed(LossSettings, plain(cfg.loss), "loss"), LossSettings)


EXPERIMENTS = _options("experiment")


def test_the_experiments_cover_nnunets_trainer_variants() -> None:
    """50 or more of nnU-Net 2.8.1's 56 variant classes, each under its nnU-Net name."""
    variants = [e for e in EXPERIMENTS if e.startswith("nnUNetTrainer")]
    assert len(variants) >= 50
    for name in variants:
        text = (CONFIGS / "experiment" / f"{name}.yaml").read_text()
        assert f"experiment_name: {name}\n" in text and "nnU-Net 2.8.1" in text


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_builds_a_task_and_data_module(experiment: str, preprocessed,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Composed with a real generated plan, read into typed settings and instantiated, as train.py does."""
    from nnlight.pipeline.train import build_data, build_task
    from nnlight.pipeline.train_config import parse
    from nnlight.pipeline.train_setup import prepare

    if "Adan" in experiment:
        pytest.importorskip("adan_pytorch", reason='pip install "nnlight[adan]"')
    monkeypatch.setenv("NNLIGHT_PREPROCESSED", str(preprocessed[0].parent))
    setup = prepare(parse(_train_config(preprocessed[0].parent, f"experiment={experiment}")))
    task, data = build_task(setup), build_data(setup)
    assert isinstance(task, SegmentationTask) and isinstance(data, SegmentationDataModule)
    assert isinstance(task.configure_optimizers()["optimizer"], setup.config.optimizer.cls)
    masked = tuple(i for i, use in enumerate(preprocessed[1].configurations["3d_fullres"].use_mask_for_norm) if use)
    assert masked and data.mask_channels == masked  # the plan's use_mask_for_norm reaches the augmentation
    expected = {"nnUNetTrainerBN": ("norm", "batch"), "nnUNetTrainerNoDeepSupervision": ("deep_supervision", False)}
    if experiment in expected:
        field, value = expected[experiment]
        assert task.checked_network.choice.arguments[field] == value


def test_config_files_cannot_import_arbitrary_code() -> None:
    with pytest.raises(UserError, match=r"callbacks\.evil\._target_='os\.system' is not a .*Callback class"):
        components(({"evil": {"_target_": "os.system", "command": "true"}}), "callbacks", L.Callback)
    nested = {"x": {"_target_": "lightning.pytorch.callbacks.EarlyStopping", "monitor": {"_target_": "os.getcwd"}}}
    with pytest.raises(UserError, match="another _target_"):
        components((nested), "callbacks", L.Callback)
    sneaky = {"_target_": "lightning.pytorch.callbacks.model_checkpoint.os.system"}
    with pytest.raises(UserError, match="is not a"):
        component((sneaky), "callbacks.x", L.Callback)
    writer = {"_target_": "nnlight.utils.files.atomic_write_text", "path": "/tmp/x.pth", "text": "import os"}
    with pytest.raises(UserError, match=r"nnlight\.utils\.files\.atomic_write_text' is not a"):
        component((writer), "callbacks.x", L.Callback)  # an nnlight function is no callback


def test_a_users_own_class_works_and_a_wrong_argument_is_named() -> None:
    from torch.optim import Optimizer

    own = component(({"_target_": "tests.test_configs.MyCallback", "every": 3}), "callbacks.mine",
                    L.Callback)
    assert own.create().every == 3
    with pytest.raises(UserError, match=r"optimizer: SGD has no argument\(s\) betas; valid: params, lr"):
        component(({"_target_": "torch.optim.SGD", "lr": 0.1, "betas": [0.9]}), "optimizer",
                  Optimizer)


class MyCallback(L.Callback):
    """A user's own callback, named by its import path."""

    def __init__(self, every: int = 1) -> None:
        self.every = every


def test_a_logger_whose_package_is_not_installed_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from omegaconf import OmegaConf

    from nnlight.pipeline import train_config
    from nnlight.utils.errors import UserError

    real = importlib.util.find_spec
    monkeypatch.setattr(train_config.importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else
                        real(name, *a))
    logger = OmegaConf.load(CONFIGS / "logger" / "wandb.yaml")
    logger.pop("defaults")
    with pytest.raises(UserError, match=r'logger.wandb needs the wandb package, which is not installed: pip install '
                                        r'"nnlight\[wandb\]"'):
        train_config.logger_components(plain(logger))
