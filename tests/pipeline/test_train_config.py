"""The training config is parsed once into typed settings: the run's identity (what names and guards its folder)
is the one nnlight computed before the parse existed, and nothing of the DictConfig travels further."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from nnlight.model.network import NetworkChoice
from nnlight.pipeline.cli import compose_config
from nnlight.pipeline.config_dir import CONFIG_DIR
from nnlight.pipeline.identity import EVALUATION_ONLY, config_hash, current_identity, without_keys
from nnlight.pipeline.train_config import TrainConfig, parse
from nnlight.training.losses import LossSettings
from nnlight.utils.components import Component
from tests.conftest import Roots

pytestmark = pytest.mark.integration

# config_hash of the run identity that nnlight f7d1cb7 (before the typed parse) computed for these overrides on
# the planned test demo (5 cases of 16x32x28): the same identity, so every existing run folder is still its own
IDENTITIES_BEFORE = {("plan=Dataset900_Demo/3d_fullres",): "ac88459c0d9bd5ab",
                     ("plan=Dataset900_Demo/2d", "loss=dice", "trainer.max_epochs=3", "data.num_workers=0"):
                         "7c8003f3d4a82154"}


def _parsed_in_a_run(overrides: list[str], run_folder: Path) -> TrainConfig:
    """``parse`` as inside a Hydra run (its runtime facts set)."""
    cfg = compose_config(CONFIG_DIR, "train", overrides)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_folder)
    hydra = HydraConfig.instance()
    previous = hydra.cfg
    hydra.set_config(cfg)
    try:
        return parse(DictConfig({k: v for k, v in cfg.items() if k != "hydra"}))
    finally:
        hydra.cfg = previous


@pytest.mark.parametrize("overrides", list(IDENTITIES_BEFORE))
def test_runs_recorded_before_keep_their_identity_less_the_evaluation_only_settings(
        planned: Roots, overrides: tuple[str, ...], tmp_path: Path) -> None:
    """What f7d1cb7 recorded (the resolved config less the name's exclusions) is today's identity once the
    evaluation-only settings are dropped: the migration that finds every earlier run folder again."""
    config = _parsed_in_a_run(list(overrides), tmp_path / "run")
    excluded = ["paths.raw", "paths.preprocessed", "paths.results", "data.num_workers", "trainer.accelerator",
                "trainer.devices", "logger", "logger.images_every_n_epochs", "launcher", "optimized_metric",
                "nonfinite_loss_patience", "checkpoints", "verbose", "hparams_search"]  # f7d1cb7's exclude_keys
    added_since = ["loss.class_weights", "trainer.num_nodes"]
    recorded_before = without_keys(config.resolved, [*excluded, *added_since])
    assert config_hash(recorded_before) == IDENTITIES_BEFORE[overrides]
    assert current_identity(recorded_before) == config.identity
    assert not set(EVALUATION_ONLY) & set(config.identity)
    # a key that changes nothing trained is left out of the identity, and kept in what the loggers get
    assert "num_workers" not in config.identity["data"] and "num_workers" in config.resolved["data"]


def test_every_group_is_typed_and_no_config_object_travels(planned: Roots, tmp_path: Path) -> None:
    config = _parsed_in_a_run(["plan=Dataset900_Demo/2d", "loss=dice"], tmp_path / "run")
    assert isinstance(config.network, NetworkChoice) and isinstance(config.loss, LossSettings)
    assert isinstance(config.optimizer, Component) and config.run_folder is not None
    assert config.run_folder.path == tmp_path / "run" and config.log_file == tmp_path / "run" / "train.log"

    def plain_values(value: object) -> bool:
        if isinstance(value, DictConfig):
            return False
        if isinstance(value, dict):
            return all(plain_values(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return all(plain_values(v) for v in value)
        return True

    assert all(plain_values(getattr(config, f.name)) for f in dataclasses.fields(config))
