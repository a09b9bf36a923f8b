"""The run folder's path: ``<results>/<Dataset>/<configuration>/<experiment>[<differences>]/fold_<k>``, resolved by
Hydra (the resolvers below) before train.py's stage starts.

A run's folder is its identity, so the name comes from the *resolved* config, not from how the overrides were
typed: ``<differences>`` lists only the values that differ from the experiment's own defaults (``loss=dice_ce``,
the default, names no difference: it is the same run as no override). Every part is a plain name: a value with
``/`` in it is shortened to its last parts plus a hash, ``plan.dataset`` / ``data.fold`` / ``experiment_name``
must be names, and the list is cut to a bounded length (with a hash of the whole) so names never grow without
bound. Kept apart from the training code so registering the resolvers costs no torch/Lightning import.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from omegaconf import OmegaConf

from nnlight.pipeline.config_dir import CONFIG_DIR
from nnlight.pipeline.config_values import plain
from nnlight.utils.names import NAME_CHARACTERS, configuration_name, dataset_name, fold_name, folder_name

DEFAULT_PLANS = "nnUNetPlans"
# the folder's other parts, or what names no difference in training (configs/hydra/train.yaml's exclude_keys)
LOCATION_KEYS = ("plan", "data.fold", "experiment", "experiment_name", "init_from", "previous_stage")
MAX_DIFFERENCES_BYTES = 160  # beyond this the list is cut and a hash of the whole appended
_OMITTED_GROUPS = ("plan", "experiment", "paths", "logger", "launcher", "hparams_search", "hydra")


def configuration_folder(configuration: str, plans_name: str) -> str:
    """The configuration part of a run folder, as ``plan=<Dataset>/<name>`` spells it: ``3d_fullres`` for nnU-Net's
    default plans, ``3d_fullres_<plans>`` for a preset's or transferred plans, so runs of different plans never
    share a folder."""
    configuration_name(configuration, "plan.configuration")
    configuration_name(plans_name, "plan.plans_name")
    return configuration if plans_name == DEFAULT_PLANS else f"{configuration}_{plans_name}"


def absolute(path: str) -> str:
    """A multirun job's folder is ``sweep.dir / sweep.subdir``: an absolute subdir puts it where a single run
    with the same choices goes, while the sweep's own record stays in its per-sweep folder."""
    return os.path.abspath(path)


def run_name(experiment: str, overrides: Sequence[str], init_from: str | None = None,
             previous_stage: str | None = None) -> str:
    """``<experiment>[<differences>]``: the experiment and the values this run's config changes from it."""
    folder_name(experiment, "experiment_name")
    items = [*differences(tuple(str(o) for o in overrides)),
             *(f"{key}={_path_in_name(str(value))}" for key, value in
               (("init_from", init_from), ("previous_stage", previous_stage)) if value)]
    return folder_name(str(experiment) + bounded_suffix(sorted(items)), "experiment_name")


def bounded_suffix(items: Sequence[str]) -> str:
    """``[a=1,b=2]``; past ``MAX_DIFFERENCES_BYTES`` the items that fit, then ``...#<hash of all>``."""
    if not items:
        return ""
    joined = ",".join(items)
    if len(joined.encode()) <= MAX_DIFFERENCES_BYTES:
        return f"[{joined}]"
    digest = hashlib.sha256(joined.encode()).hexdigest()[:12]
    kept: list[str] = []
    for item in items:
        if len(",".join([*kept, item]).encode()) > MAX_DIFFERENCES_BYTES - 20:
            break
        kept.append(item)
    return f"[{','.join(kept)},...#{digest}]"


def _path_in_name(path: str) -> str:
    """A path never nests folders in a name: its last three parts joined by ``~`` plus a hash of the whole."""
    parts = [re.sub(r"\[.*\]", "", part) for part in re.split(r"[/\\]", path) if part not in ("", ".", "..")]
    readable = "".join(c if c in NAME_CHARACTERS else "_" for c in "~".join(parts[-3:]))
    return readable + "#" + hashlib.sha256(path.encode()).hexdigest()[:8]


def _value_in_name(value: Any) -> str:
    """How a value reads in a folder name: YAML-like scalars (``false``, ``null``, ``0.001``), lists as ``[a,b]``;
    text holding a path separator or a control character becomes :func:`_path_in_name`."""
    if isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True).replace('"', "")
    if re.search(r"[/\\\x00-\x1f]", text) or not set(text) <= NAME_CHARACTERS:
        return _path_in_name(text)
    return text


@functools.lru_cache(maxsize=256)
def differences(overrides: tuple[str, ...]) -> tuple[str, ...]:
    """The ``group=option`` and ``key=value`` items by which the config these overrides compose differs from the
    experiment's defaults (the same plan, experiment and fold with no other override). A group option counts when
    it changes the outcome (``loss=dice_ce`` does not; ``augmentation=default`` after ``debug=overfit`` does); a
    group an option sets in turn (``debug=overfit`` sets ``augmentation=none``) is named by that option alone."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    with _composer() as hydra_compose:
        composed: dict[tuple[str, ...], dict[str, Any]] = {}

        def compose(lines: list[str]) -> dict[str, Any]:
            key = tuple(lines)
            if key not in composed:
                composed[key] = hydra_compose(lines)
            return composed[key]

        full = compose(list(overrides))
        ignored = {str(k) for k in full["hydra"]["job"]["config"]["override_dirname"]["exclude_keys"]} | \
            set(LOCATION_KEYS)
        base_lines = [str(o.input_line) for o in parsed if _bare(o.get_key_element()) in ignored
                      or _bare(o.get_key_element()).startswith("hydra.") or o.get_key_element().startswith("hydra/")]
        ignored.discard("plan")  # the plan group locates the run; a planned value set on the command line (plan.*)
        #                          is a difference
        choices = _choices(full)
        typed = {_bare(o.get_key_element()): str(o.input_line) for o in parsed
                 if _bare(o.get_key_element()) in choices and o.input_line not in base_lines}
        reference = compose([*base_lines, *typed.values()])
        items = []
        for group in sorted(typed):
            without = compose([*base_lines, *(v for k, v in typed.items() if k != group)])
            if _choices(without).get(group) != choices.get(group):
                items.append(f"{group}={_value_in_name(choices.get(group))}")
    return tuple(items + _leaf_differences(reference, full, ignored))


def _bare(key: str) -> str:
    return key.lstrip("+~")


def _choices(config: Mapping[str, Any]) -> dict[str, Any]:
    """The method groups' chosen options (the location, logging and launching groups left out) of a composed
    config's plain values."""
    return {str(g): c for g, c in config["hydra"]["runtime"]["choices"].items()
            if str(g).split("/")[0] not in _OMITTED_GROUPS}


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping) and node:
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


def _leaf_differences(reference: Mapping[str, Any], full: Mapping[str, Any], ignored: set[str]) -> list[str]:
    """Values as written (interpolations unresolved), so a value derived from another (``scheduler.max_epochs``
    from ``trainer.max_epochs``) names no difference of its own."""
    def values(config: Mapping[str, Any]) -> dict[str, Any]:
        flat = _flat({k: v for k, v in config.items() if k != "hydra"})
        return {k: v for k, v in flat.items() if not any(k == i or k.startswith(f"{i}.") for i in ignored)}
    old, new = values(reference), values(full)
    return [f"~{k}" if k not in new else f"{k}={_value_in_name(new[k])}"
            for k in sorted(set(old) | set(new)) if old.get(k, _ABSENT) != new.get(k, _ABSENT)]


_ABSENT = object()


@contextlib.contextmanager
def _composer() -> Iterator[Any]:
    """Hydra's compose for the train config: inside a running nnlight command (Hydra initialized) directly, else
    with the packaged configs for the duration."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    def train_config(overrides: list[str]) -> dict[str, Any]:
        """The train config these overrides compose, as plain values written (interpolations unresolved)."""
        return plain(compose("train", overrides=overrides, return_hydra_config=True), resolve=False)

    if GlobalHydra.instance().is_initialized():
        yield train_config
        return

    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            yield train_config
    finally:
        GlobalHydra.instance().clear()


def _run_name(experiment: str, task_overrides: Any, hydra_overrides: Any, init_from: Any, previous_stage: Any) -> str:
    """Hydra keeps ``hydra.*`` overrides (a search path, a forced run dir) apart from the task's: both compose it
    (``hydra.mode``, which Hydra adds itself, changes nothing composed; left out, the command-line check's name is
    reused)."""
    hydra = [str(o) for o in hydra_overrides or [] if not str(o).startswith("hydra.mode=")]
    return run_name(experiment, [*hydra, *(task_overrides or [])], init_from, previous_stage)


def dataset_part(value: str) -> str:
    return dataset_name(value, "plan.dataset")


def fold_part(value: Any) -> str:
    return fold_name(value, "data.fold")


_RESOLVERS: dict[str, Callable[..., str]] = {
    "nnlight_configuration": configuration_folder, "nnlight_absolute": absolute, "nnlight_run_name": _run_name,
    "nnlight_dataset": dataset_part, "nnlight_fold": fold_part}
for _name, _resolver in _RESOLVERS.items():
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)

