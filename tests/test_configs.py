"""Every option of every config group composes and becomes its typed settings."""

from __future__ import annotations

import inspect
from pathlib import Path

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from lightning.pytorch.loggers import CSVLogger, Logger
from omegaconf import DictConfig, OmegaConf

from nnlight.data.augmentation import AugmentationSettings
from nnlight.pipeline.settings import settings_from_config
from nnlight.planning import PlannerSettings
from nnlight.utils.errors import UserError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SETTINGS = {"planner": PlannerSettings, "augmentation": AugmentationSettings}


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in SETTINGS for o in _options(g)])
def test_group_option_composes_into_settings(group: str, option: str) -> None:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(overrides=[f"+{group}={option}"])
    settings = settings_from_config(SETTINGS[group], cfg[group], group)
    assert isinstance(settings, SETTINGS[group])


def test_augmentation_presets_mean_what_they_say() -> None:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        none = compose(overrides=["+augmentation=none"]).augmentation
        no_mirror = compose(overrides=["+augmentation=no_mirroring"]).augmentation
        default = compose(overrides=["+augmentation=default", "augmentation.p_rotation=0.5"]).augmentation
    assert all(v == 0 for k, v in none.items() if k.startswith("p_"))
    assert no_mirror.p_mirror == 0 and no_mirror.p_rotation == 0.2
    settings = settings_from_config(AugmentationSettings, default, "augmentation")
    assert settings.p_rotation == 0.5 and settings.scaling == (0.7, 1.4)
    assert dict(settings.__dict__, p_rotation=0.2) == dict(AugmentationSettings().__dict__)  # nnU-Net's values


def test_plan_config_composes_with_every_planner() -> None:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        for option in _options("planner"):
            cfg = compose("plan", overrides=["dataset=Dataset001_X", f"planner={option}"])
            assert cfg.planner.preset == option


def test_wrong_setting_is_named() -> None:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(overrides=["+augmentation=default", "+augmentation.p_rotaton=1"])
    with pytest.raises(UserError, match=r"augmentation\.p_rotaton"):
        settings_from_config(AugmentationSettings, cfg.augmentation, "augmentation")


TRAIN_GROUPS = ["data", "augmentation", "loss", "optimizer", "scheduler", "trainer", "callbacks", "logger",
                "launcher", "experiment", "debug"]


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in TRAIN_GROUPS for o in _options(g)])
def test_every_train_option_composes_with_a_generated_plan(group: str, option: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import nnlight.pipeline.train  # noqa: F401  (registers the run-name resolver)

    plan_dir = tmp_path / "configs" / "plan" / "Dataset001_X"
    plan_dir.mkdir(parents=True)
    (plan_dir / "3d_fullres.yaml").write_text("dataset: Dataset001_X\nconfiguration: 3d_fullres\n"
                                             "batch_size: 2\npatch_size: [8, 8, 8]\nbatch_dice: true\n")
    monkeypatch.setenv("NNLIGHT_PREPROCESSED", str(tmp_path))
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=["plan=Dataset001_X/3d_fullres", f"{group}={option}"],
                      return_hydra_config=True)
    assert cfg.data.batch_size == 2 and list(cfg.data.patch_size) == [8, 8, 8]
    assert cfg.loss.batch_dice is True and cfg.experiment_name == "baseline"
    _instantiates(group, option, cfg, tmp_path)


def _instantiates(group: str, option: str, cfg: DictConfig, tmp_path: Path) -> None:
    """The group's objects are built (loggers, callbacks) or accepted by what consumes them (trainer, launcher)."""
    from nnlight.pipeline.train import _instantiate_group, _trainer_arguments

    if group == "logger":
        loggers = _instantiate_group(cfg.logger, "logger", save_dir=str(tmp_path))
        assert any(isinstance(x, CSVLogger) for x in loggers) and all(isinstance(x, Logger) for x in loggers)
        assert len(loggers) == len(cfg.logger)
    elif group == "callbacks":
        callbacks = _instantiate_group(cfg.callbacks, "callbacks")
        assert len(callbacks) == len(cfg.callbacks) and all(isinstance(x, L.Callback) for x in callbacks)
    elif group == "trainer":
        inspect.signature(L.Trainer).bind(**_trainer_arguments(cfg))  # every key is a Trainer argument
    elif group == "launcher":
        assert cfg.hydra.launcher._target_.startswith("hydra_plugins.hydra_submitit_launcher")
        assert cfg.hydra.launcher.submitit_folder.endswith("/.submitit/%j")


def test_config_files_cannot_import_arbitrary_code() -> None:
    from nnlight.pipeline.train import _instantiate_group

    with pytest.raises(UserError, match=r"callbacks\.evil\._target_='os\.system'"):
        _instantiate_group(OmegaConf.create({"evil": {"_target_": "os.system", "command": "true"}}), "callbacks")
