"""Train one fold of a planned configuration: ``python train.py plan=<Dataset>/<configuration> data.fold=0``."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

import nnlight.pipeline.run_names  # noqa: F401  (registers the run folder's name resolver)
from nnlight.pipeline import run_stage
from nnlight.pipeline.cli import check_command_line


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run_stage("train", cfg)


if __name__ == "__main__":
    check_command_line(Path(__file__).parent / "configs", "train")
    main()
