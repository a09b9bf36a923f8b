"""Score predictions, cross-validation and the best configuration: ``python evaluate.py dataset=<Dataset>``."""

import hydra
from omegaconf import DictConfig

from nnlight.pipeline import run_stage
from nnlight.pipeline.evaluate import run


@hydra.main(version_base="1.3", config_path="configs", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run_stage(run, cfg)


if __name__ == "__main__":
    main()
