"""Where nnlight's configs are: they ship inside the package (``nnlight.configs``: the checkout's top-level
``configs/`` folder, mapped by pyproject.toml), so an installed wheel works from any folder without the source
tree."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

CONFIG_DIR = Path(str(importlib.resources.files("nnlight.configs")))
