"""Verify, fingerprint and plan a raw nnU-Net-format dataset: ``python plan.py dataset=<name or folder>``."""

import hydra
from omegaconf import DictConfig

from nnlight.pipeline import run_stage
from nnlight.pipeline.plan import run


@hydra.main(version_base="1.3", config_path="configs", config_name="plan")
def main(cfg: DictConfig) -> None:
    run_stage(run, cfg)


if __name__ == "__main__":
    main()
