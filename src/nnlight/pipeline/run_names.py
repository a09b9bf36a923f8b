"""The run folder's path: ``<results>/<Dataset>/<configuration>/<name>/fold_<k>``, resolved by Hydra (the resolvers
below) before train.py's stage starts.

``<name>`` is the experiment (``baseline``, an experiment file's name, or the network option's name when no
experiment is given) and the values of the resolved config that differ from that experiment's defaults, as
``+<key>-<value>`` items: ``baseline+loss-dice+trainer.max_epochs-50``, ``segresnet+optimizer.lr-0.001``. A name
needs no shell quoting and is taken by ``model=`` and ``models=[...]`` as typed: letters, digits and ``_.:%@-+``
only. It comes from the *resolved* config, not from how the overrides were typed (``loss=dice_ce``, the default,
names no difference), and a run whose identity (:mod:`nnlight.pipeline.identity`) is already trained under
another name — an equivalent spelling, or a folder named by an earlier nnlight — is that folder. A value that
cannot be written exactly (a path, a mapping, an unusual character) or a list past a bounded length ends the name
with ``+hash-<hash of every difference>``, so two different runs never share a name. Kept apart from the training
code so registering the resolvers costs no torch/Lightning import.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nnlight.pipeline.config_dir import CONFIG_DIR
from nnlight.pipeline.config_values import plain
from nnlight.pipeline.identity import config_hash, current_identity, model_identity, run_identity
from nnlight.utils.names import NAME_VALUE_CHARACTERS, configuration_name, dataset_name, fold_name, folder_name

DEFAULT_PLANS = "nnUNetPlans"
# the folder's other parts, or what names no difference in training (configs/hydra/train.yaml's exclude_keys)
LOCATION_KEYS = ("plan", "data.fold", "experiment", "experiment_name", "init_from", "previous_stage")
MAX_DIFFERENCES_BYTES = 160  # beyond this the list is cut and a hash of the whole appended
DEFAULT_EXPERIMENT = "baseline"  # configs/experiment/baseline.yaml: the nnU-Net recipe
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
    """``<experiment or network option>+<key>-<value>...``: the values this run's config changes from the
    experiment's defaults."""
    folder_name(experiment, "experiment_name")
    pairs = list(differences(tuple(str(o) for o in overrides)))
    base = str(experiment)
    chosen_network = next((value for key, value in pairs if key == "network"), None)
    if base == DEFAULT_EXPERIMENT and isinstance(chosen_network, str) and chosen_network != "custom":
        base = chosen_network  # the method's own name: segresnet, attn_resunet
        pairs = [(key, value) for key, value in pairs if key != "network"]
    pairs += [(key, value) for key, value in (("init_from", init_from), ("previous_stage", previous_stage)) if value]
    return folder_name(base + name_suffix(pairs), "experiment_name")


def name_suffix(pairs: Sequence[tuple[str, Any]]) -> str:
    """``+key-value`` per difference, sorted; past ``MAX_DIFFERENCES_BYTES``, or where a value cannot be written
    exactly, the items that fit and ``+hash-<hash of every difference>``."""
    if not pairs:
        return ""
    rendered = sorted((f"{key}-{text}", exact) for key, text, exact in
                      ((key, *_rendered(value)) for key, value in pairs))
    items = [item for item, _ in rendered]
    joined = "+" + "+".join(items)
    if len(joined.encode()) <= MAX_DIFFERENCES_BYTES and all(exact for _, exact in rendered):
        return joined
    digest = hashlib.sha256(json.dumps(sorted([k, _exact_text(v)] for k, v in pairs)).encode()).hexdigest()[:12]
    kept: list[str] = []
    for item in items:
        if len("+" + "+".join([*kept, item])) > MAX_DIFFERENCES_BYTES - 20:
            break
        kept.append(item)
    return "".join(f"+{item}" for item in kept) + f"+hash-{digest}"


def _exact_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _rendered(value: Any) -> tuple[str, bool]:
    """How a value reads in a name (YAML-like scalars: ``false``, ``null``, ``0.001``; a list as ``24:40:40``), and
    whether it reads exactly. A path reads as its last part, other characters as ``_``: not exact."""
    if value is REMOVED:
        return "unset", True
    if isinstance(value, list) and all(v is None or isinstance(v, (str, int, float, bool)) for v in value):
        parts = [_rendered(v) for v in value]
        return ":".join(text for text, _ in parts), all(exact and ":" not in text for text, exact in parts)
    if isinstance(value, str):
        text, exact = value, True
    elif value is None or isinstance(value, (bool, int, float)):
        text, exact = json.dumps(value), True
    else:
        text, exact = json.dumps(value, sort_keys=True, default=str), False
    if re.search(r"[/\\]", text):
        text, exact = re.split(r"[/\\]", text.rstrip("/\\"))[-1] or "_", False
    if not set(text) <= NAME_VALUE_CHARACTERS or not text:
        text, exact = "".join(c if c in NAME_VALUE_CHARACTERS else "_" for c in text) or "_", False
    return text, exact


@functools.lru_cache(maxsize=256)
def differences(overrides: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    """The ``(group, option)`` and ``(key, value)`` pairs (:data:`REMOVED` for a deleted key) by which the config
    these overrides compose differs from the
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
        items: list[tuple[str, Any]] = []
        for group in sorted(typed):
            without = compose([*base_lines, *(v for k, v in typed.items() if k != group)])
            if _choices(without).get(group) != choices.get(group):
                items.append((group, choices.get(group)))
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


def _leaf_differences(reference: Mapping[str, Any], full: Mapping[str, Any], ignored: set[str]
                      ) -> list[tuple[str, Any]]:
    """Values as written (interpolations unresolved), so a value derived from another (``scheduler.max_epochs``
    from ``trainer.max_epochs``) names no difference of its own."""
    def values(config: Mapping[str, Any]) -> dict[str, Any]:
        flat = _flat({k: v for k, v in config.items() if k != "hydra"})
        return {k: v for k, v in flat.items() if not any(k == i or k.startswith(f"{i}.") for i in ignored)}
    old, new = values(reference), values(full)
    return [(k, new.get(k, REMOVED)) for k in sorted(set(old) | set(new)) if old.get(k, REMOVED) != new.get(k, REMOVED)]


REMOVED = object()  # a key the overrides delete (``~key``)


@contextlib.contextmanager
def _composer() -> Iterator[Any]:
    """Hydra's compose for the train config: inside a running nnlight command (Hydra initialized) directly, else
    with the packaged configs for the duration."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    def train_config(overrides: list[str], resolve: bool = False) -> dict[str, Any]:
        """The train config these overrides compose, as plain values written (interpolations unresolved), or
        (``resolve``) as the stage reads them: resolved, without Hydra's node."""
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
        if resolve:
            return plain(OmegaConf.masked_copy(cfg, [str(k) for k in cfg if k != "hydra"]))
        return plain(cfg, resolve=False)

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
    reused). A model trained before with this identity under another name is that model's folder."""
    hydra = [str(o) for o in hydra_overrides or [] if not str(o).startswith("hydra.mode=")]
    overrides = [*hydra, *(task_overrides or [])]
    name = run_name(experiment, overrides, init_from, previous_stage)
    return trained_as(tuple(overrides), name) or name


def trained_as(overrides: tuple[str, ...], name: str) -> str | None:
    """The name of the model folder (beside ``name`` under the same dataset and configuration) whose runs have the
    identity these overrides compose, today's rule applied to what each recorded; None when ``name`` holds runs
    itself or no other folder matches."""
    try:
        identity, configuration_folder_path = _identity_and_location(overrides, _roots_environment())
    except (OmegaConfBaseException, KeyError, TypeError, ValueError):
        return None  # a config that does not resolve (a check's stub plan): the stage names what is wrong
    if any(configuration_folder_path.joinpath(name).glob("fold_*/run_config.json")):
        return None
    wanted = config_hash(model_identity(identity))
    for record in sorted(configuration_folder_path.glob("*/fold_*/run_config.json")):
        try:
            stored = json.loads(record.read_text())
        except (OSError, ValueError):
            continue  # an unreadable record: that folder's own run reports it
        if isinstance(stored, dict) and isinstance(stored.get("config"), dict) and \
                config_hash(model_identity(current_identity(stored["config"]))) == wanted:
            return record.parent.parent.name
    return None


def _roots_environment() -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("NNLIGHT_")))


@functools.lru_cache(maxsize=64)
def _identity_and_location(overrides: tuple[str, ...], environment: tuple[tuple[str, str], ...]
                           ) -> tuple[dict[str, Any], Path]:
    """The identity these overrides compose and ``<results>/<Dataset>/<configuration>`` (``environment``: the
    paths' variables, part of the cache key)."""
    with _composer() as compose:
        full = compose(list(overrides))
        values = compose(list(overrides), resolve=True)
    excluded = [str(k) for k in full["hydra"]["job"]["config"]["override_dirname"]["exclude_keys"]]
    identity = run_identity(values, [k for k in excluded if k not in LOCATION_KEYS])
    plan = values["plan"]
    folder = Path(str(values["paths"]["results"])) / dataset_name(plan["dataset"], "plan.dataset") / \
        configuration_folder(str(plan["configuration"]), str(plan.get("plans_name", DEFAULT_PLANS)))
    return identity, folder


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

