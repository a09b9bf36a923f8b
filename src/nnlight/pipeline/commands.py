"""The commands ``nnlight-plan``, ``nnlight-train``, ``nnlight-predict``, ``nnlight-evaluate``, ``nnlight-benchmark``
(also ``python -m nnlight <command>`` and a checkout's ``plan.py`` etc.): each checks its command line, then hands
the composed config to its stage.
"""

from __future__ import annotations

import sys

import hydra

from nnlight.pipeline import run_stage
from nnlight.pipeline.cli import check_command_line, use_own_config_dir
from nnlight.pipeline.config_dir import CONFIG_DIR
from nnlight.utils.errors import USER_ERROR_EXIT_CODE
from nnlight.utils.quiet import quiet_third_party_warnings, verbose_requested

COMMANDS = ("plan", "train", "predict", "evaluate", "benchmark")  # each one's primary config has its name


def _run(command: str) -> None:
    if not verbose_requested(sys.argv[1:]):
        quiet_third_party_warnings()
    use_own_config_dir()
    check_command_line(CONFIG_DIR, command)
    hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=command)(run_stage)()


def plan() -> None:
    """``nnlight-plan dataset=<folder | DatasetXXX_Name | id>``: verify, fingerprint, plan, preprocess."""
    _run("plan")


def train() -> None:
    """``nnlight-train plan=<Dataset>/<configuration> data.fold=0``: train one fold."""
    _run("train")


def predict() -> None:
    """``nnlight-predict model=<folder>|best input=<images> output=<folder>``: segment images."""
    _run("predict")


def evaluate() -> None:
    """``nnlight-evaluate dataset=<Dataset>``: cross-validation results and the best configuration."""
    _run("evaluate")


def benchmark() -> None:
    """``nnlight-benchmark suite=<name>``: a benchmark suite end to end."""
    _run("benchmark")


def main() -> None:
    """``python -m nnlight <command> key=value ...``."""
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        given = f"'{sys.argv[1]}' is not a command; " if len(sys.argv) > 1 else ""
        print(f"nnlight: error: {given}usage: python -m nnlight {{{','.join(COMMANDS)}}} key=value ...  "
              "(--help after a command lists its options)", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)
    command = sys.argv.pop(1)
    sys.argv[0] = f"nnlight-{command}"
    _run(command)
