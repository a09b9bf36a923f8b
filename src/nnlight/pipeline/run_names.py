"""The run folder's name: ``<experiment>[<overrides>]``, resolved by Hydra before train.py's stage starts.

Kept apart from the training code so registering the resolver costs no torch/Lightning import.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from omegaconf import OmegaConf

DEFAULT_PLANS = "nnUNetPlans"


def overrides_suffix(override_dirname: str, init_from: str | None = None,
                     previous_stage: str | None = None) -> str:
    """``[loss=dice,trainer.max_epochs=50]`` after the experiment name, or nothing without overrides.

    A multirun spells booleans as Python does (``False``), a single run as typed (``false``): both become
    lowercase so the same overrides always name the same folder. Paths (``init_from``, ``previous_stage``), kept
    out of Hydra's override list because their ``/`` would nest folders, join the list as their last three parts
    plus a hash of the whole path; the saved config holds them in full.
    """
    items = [re.sub(r"=(True|False)$", lambda m: "=" + m.group(1).lower(), item)
             for item in _split_items(override_dirname)]
    paths = {"init_from": init_from, "previous_stage": previous_stage}
    items = sorted([*items, *(f"{key}={_path_in_name(str(value))}" for key, value in paths.items() if value)])
    return f"[{','.join(items)}]" if items else ""


def _split_items(override_dirname: str) -> list[str]:
    """Hydra joins ``key=value`` items with commas; a comma inside a list value (``[1,2]``) is not a split."""
    return [item for item in re.split(r",(?=[\w.+~@/-]+=)", override_dirname) if item]


def _path_in_name(path: str) -> str:
    parts = [re.sub(r"\[.*\]", "", part) for part in Path(path).parts if part not in ("/", "")]
    return "~".join(parts[-3:]) + "#" + hashlib.sha256(path.encode()).hexdigest()[:8]


def configuration_folder(configuration: str, plans_name: str) -> str:
    """The configuration part of a run folder, as ``plan=<Dataset>/<name>`` spells it: ``3d_fullres`` for nnU-Net's
    default plans, ``3d_fullres_<plans>`` for a preset's or transferred plans, so runs of different plans never
    share a folder."""
    return configuration if plans_name == DEFAULT_PLANS else f"{configuration}_{plans_name}"


def absolute(path: str) -> str:
    """A multirun job's folder is ``sweep.dir / sweep.subdir``: an absolute subdir puts it where a single run
    with the same choices goes, while the sweep's own record stays in its per-sweep folder."""
    return os.path.abspath(path)


if not OmegaConf.has_resolver("nnlight_overrides"):
    OmegaConf.register_new_resolver("nnlight_overrides", overrides_suffix)
if not OmegaConf.has_resolver("nnlight_configuration"):
    OmegaConf.register_new_resolver("nnlight_configuration", configuration_folder)
if not OmegaConf.has_resolver("nnlight_absolute"):
    OmegaConf.register_new_resolver("nnlight_absolute", absolute)
