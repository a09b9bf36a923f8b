"""The stage façade: the only code that reads a DictConfig and turns it into typed calls."""

from __future__ import annotations

import contextlib
import importlib
import sys
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue

from nnlight.utils.errors import USER_ERROR_EXIT_CODE, UserError
from nnlight.utils.run_log import logging_output_to


def run_stage(cfg: DictConfig) -> Any:
    """What Hydra runs for every command (module-level, so a cluster launcher can pickle it): the stage its
    primary config names (``nnlight.pipeline.<stage>``) parses the config once, then runs on it; train's return
    value is what a sweeper optimizes. A user mistake ends with its message on stderr and exit code 2.

    The stage (torch, Lightning) is imported only now, after the entry point checked the command line, so
    ``--help`` and a mistyped option answer in a fraction of a second.
    """
    stage = str(HydraConfig.get().job.config_name)
    module = importlib.import_module(f"nnlight.pipeline.{stage}")
    try:
        config = module.parse(cfg)
        with _lock(config), logging_output_to(config.log_file, deferred=stage != "train"):
            return module.run(config)
    except MISSING_KEY_ERRORS as e:
        _refuse(missing_key(e))
    except UserError as e:
        _refuse(e)


MISSING_KEY_ERRORS = (ConfigKeyError, ConfigAttributeError, MissingMandatoryValue)


def missing_key(error: Exception) -> UserError:
    """A key the stage reads that a config file moved or left out, as the user's mistake."""
    return missing_value(getattr(error, "full_key", None) or str(error).splitlines()[0])


def missing_value(key: str) -> UserError:
    return UserError(f"the composed config has no value for {key!r}: a config file of yours may have moved it (e.g. "
                     "a '# @package _global_' header) or left it out; the command with --cfg job shows the config")


def _refuse(error: UserError) -> None:
    print(f"\nnnlight: error: {error}", file=sys.stderr)
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise error  # Hydra records the job as failed and runs the sweep's other jobs; the sweep then exits 1
    sys.exit(USER_ERROR_EXIT_CODE)


def _lock(config: Any) -> contextlib.AbstractContextManager[None]:
    """A training run holds its run folder's lock from before anything is written to it (its log included)."""
    run_folder = getattr(config, "run_folder", None)
    if run_folder is None:
        return contextlib.nullcontext()
    from nnlight.pipeline.run_record import run_lock

    return run_lock(run_folder)
