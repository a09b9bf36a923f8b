"""The run folder's name: ``<experiment>[<overrides>]``, resolved by Hydra before train.py's stage starts.

Kept apart from the training code so registering the resolver costs no torch/Lightning import.
"""

from __future__ import annotations

import os
import re

from omegaconf import OmegaConf


def overrides_suffix(override_dirname: str) -> str:
    """``[loss=dice,trainer.max_epochs=50]`` after the experiment name, or nothing without overrides.

    A multirun spells booleans as Python does (``False``), a single run as typed (``false``): both become
    lowercase so the same overrides always name the same folder.
    """
    normalized = re.sub(r"=(True|False)(?=,|$)", lambda m: "=" + m.group(1).lower(), override_dirname)
    return f"[{normalized}]" if normalized else ""


def absolute(path: str) -> str:
    """A multirun job's folder is ``sweep.dir / sweep.subdir``: an absolute subdir puts it where a single run
    with the same choices goes, while the sweep's own record stays in its per-sweep folder."""
    return os.path.abspath(path)


if not OmegaConf.has_resolver("nnlight_overrides"):
    OmegaConf.register_new_resolver("nnlight_overrides", overrides_suffix)
if not OmegaConf.has_resolver("nnlight_absolute"):
    OmegaConf.register_new_resolver("nnlight_absolute", absolute)
