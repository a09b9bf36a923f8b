"""Run a benchmark suite end to end: ``python benchmark.py suite=smoke`` (plan → train → tables → report)."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from nnlight.pipeline import run_stage
from nnlight.pipeline.cli import check_command_line


@hydra.main(version_base="1.3", config_path="configs", config_name="benchmark")
def main(cfg: DictConfig) -> None:
    run_stage("benchmark", cfg)


if __name__ == "__main__":
    check_command_line(Path(__file__).parent / "configs", "benchmark")
    main()
