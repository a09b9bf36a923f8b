"""Segment images with a trained model: ``python predict.py model=<folder>|best input=<images> output=<folder>``."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from nnlight.pipeline import run_stage
from nnlight.pipeline.cli import check_command_line


@hydra.main(version_base="1.3", config_path="configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    run_stage("predict", cfg)


if __name__ == "__main__":
    check_command_line(Path(__file__).parent / "configs", "predict")
    main()
