"""The stage façade: the only code that reads a DictConfig and turns it into typed calls."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

from omegaconf import DictConfig

from nnlight.utils.errors import USER_ERROR_EXIT_CODE, UserError

R = TypeVar("R")


def run_stage(stage: Callable[[DictConfig], R], cfg: DictConfig) -> R:
    """Run a stage; a user mistake ends with its message on stderr and exit code 2, not a traceback."""
    try:
        return stage(cfg)
    except UserError as e:
        print(f"\nnnlight: error: {e}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT_CODE)
