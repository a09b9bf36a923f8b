"""Where nnlight's configs are: they ship inside the package (``nnlight.configs``: the checkout's top-level
``configs/`` folder, mapped by pyproject.toml), so an installed wheel works from any folder without the source
tree."""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

CONFIG_DIR = Path(str(importlib.resources.files("nnlight.configs")))
# the researcher's own config folder (networks, losses, transforms, metrics, experiments, suites): given with
# --config-dir, or set once for every command; the entry points export it, so the processes a command starts (a
# benchmark's trainings, a launcher's jobs) and every config it composes see the same folder
USER_CONFIG_VARIABLE = "NNLIGHT_CONFIG_DIR"


def user_config_dir() -> Path | None:
    value = os.environ.get(USER_CONFIG_VARIABLE)
    return Path(value).expanduser().resolve() if value else None
