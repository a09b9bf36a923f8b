"""Train one fold of a planned configuration: ``python train.py plan=<Dataset>/<configuration> data.fold=0``."""

import hydra
from omegaconf import DictConfig

from nnlight.pipeline import run_stage
from nnlight.pipeline.train import run


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run_stage(run, cfg)


if __name__ == "__main__":
    main()
