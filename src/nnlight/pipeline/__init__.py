"""The stage façade: the only code that reads a DictConfig and turns it into typed calls."""

from __future__ import annotations

import contextlib
import importlib
import sys
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue

from nnlight.utils.errors import USER_ERROR_EXIT_CODE, UserError
from nnlight.utils.run_log import logging_output_to


def run_stage(stage: str, cfg: DictConfig) -> Any:
    """Run ``nnlight.pipeline.<stage>.run(cfg)``; a user mistake ends with its message on stderr and exit code 2.

    The stage (torch, Lightning) is imported only now, after the entry point checked the command line, so
    ``--help`` and a mistyped option answer in a fraction of a second.
    """
    run = importlib.import_module(f"nnlight.pipeline.{stage}").run
    try:
        with _lock(stage), logging_output_to(_log_file(stage, cfg), deferred=stage != "train"):
            return run(cfg)
    except MISSING_KEY_ERRORS as e:
        _refuse(missing_key(e))
    except UserError as e:
        _refuse(e)


MISSING_KEY_ERRORS = (ConfigKeyError, ConfigAttributeError, MissingMandatoryValue)


def missing_key(error: Exception) -> UserError:
    """A key the stage reads that a config file moved or left out, as the user's mistake."""
    key = getattr(error, "full_key", None) or str(error).splitlines()[0]
    return UserError(f"the composed config has no value for {key!r}: a config file of yours may have moved it (e.g. "
                     "a '# @package _global_' header) or left it out; the command with --cfg job shows the config")


def _refuse(error: UserError) -> None:
    print(f"\nnnlight: error: {error}", file=sys.stderr)
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise error  # Hydra records the job as failed and runs the sweep's other jobs; the sweep then exits 1
    sys.exit(USER_ERROR_EXIT_CODE)


def _lock(stage: str) -> contextlib.AbstractContextManager[None]:
    """A training run holds its run folder's lock from before anything is written to it (its log included)."""
    if stage != "train" or not HydraConfig.initialized():
        return contextlib.nullcontext()
    from nnlight.pipeline.run_record import run_lock
    from nnlight.utils.folders import RunFolder

    return run_lock(RunFolder(Path(HydraConfig.get().runtime.output_dir)))


def _log_file(stage: str, cfg: DictConfig) -> Path | None:
    """Where a stage's output is logged: the run folder's ``train.log``, ``<output>/predict.log``, the dataset's
    results ``evaluate.log`` (or the scored folder's)."""
    if stage == "train" and HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir) / "train.log"
    if stage == "predict" and cfg.get("output"):
        return Path(str(cfg.output)) / "predict.log"
    if stage == "evaluate" and cfg.get("prediction"):
        return Path(str(cfg.prediction)) / "evaluate.log"
    if stage == "evaluate" and cfg.get("dataset"):  # the results folder evaluate writes: <results>/<raw folder name>
        from nnlight.pipeline.plan import resolve_raw_folder

        try:
            return Path(str(cfg.paths.results)) / resolve_raw_folder(str(cfg.dataset), Path(cfg.paths.raw)).name / \
                "evaluate.log"
        except UserError:
            return None  # the stage names the mistake
    return None
