"""Verify, fingerprint and plan a raw nnU-Net-format dataset: ``python plan.py dataset=<name or folder>``."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from nnlight.pipeline import run_stage
from nnlight.pipeline.cli import check_command_line


@hydra.main(version_base="1.3", config_path="configs", config_name="plan")
def main(cfg: DictConfig) -> None:
    run_stage("plan", cfg)


if __name__ == "__main__":
    check_command_line(Path(__file__).parent / "configs", "plan")
    main()
