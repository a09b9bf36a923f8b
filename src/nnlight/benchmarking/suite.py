"""A benchmark suite as typed, checked data (``configs/suite/<name>.yaml``) and the runs it expands to.

A variant is a named list of train.py overrides (or an experiment name, or ``{overrides: [...], planner:
<preset>}`` for a network that needs its own plans, as nnU-Net's ResEnc presets do); one variant is the baseline
every other is compared with. Every run of a suite is a plain train.py run: its folder, and so whether it has
finished, follow from its overrides exactly as for a run started by hand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nnlight.utils.errors import UserError

TRAINABLE_CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres")
_SUITE_KEYS = {"name", "description", "datasets", "planner", "configurations", "folds", "seeds", "baseline",
               "variants", "budget", "overrides", "plan_overrides", "launcher", "parallel_sweeps"}
_DATASET_KEYS = {"name", "planner", "configurations", "synthetic"}
_BUDGET_KEYS = {"max_epochs", "iterations_per_epoch", "val_iterations_per_epoch"}
_SYNTHETIC_KEYS = {"num_cases", "shape", "num_channels", "num_test_cases"}


@dataclass(frozen=True)
class SuiteDataset:
    name: str  # DatasetXXX_Name under the raw root, its number, or a folder
    planner: str  # planner preset (configs/planner/<preset>.yaml)
    configurations: tuple[str, ...]
    synthetic: dict[str, Any] | None = None  # generate it (nnlight's synthetic data) when it does not exist


@dataclass(frozen=True)
class Budget:
    """Epochs × iterations per epoch; absent keys keep nnU-Net's (train.yaml's) values."""

    max_epochs: int | None = None
    iterations_per_epoch: int | None = None
    val_iterations_per_epoch: int | None = None

    def overrides(self) -> list[str]:
        keys = {"max_epochs": "trainer.max_epochs", "iterations_per_epoch": "data.iterations_per_epoch",
                "val_iterations_per_epoch": "data.val_iterations_per_epoch"}
        return [f"{keys[k]}={v}" for k, v in vars(self).items() if v is not None]


@dataclass(frozen=True)
class Suite:
    name: str
    datasets: tuple[SuiteDataset, ...]
    folds: tuple[int, ...]
    seeds: tuple[int, ...]
    baseline: str
    variants: dict[str, tuple[str, ...]]  # name -> train.py overrides
    budget: Budget
    overrides: tuple[str, ...]  # for every run (e.g. data.num_workers=0)
    plan_overrides: tuple[str, ...]  # plan.py overrides for every dataset (e.g. num_workers=0)
    launcher: tuple[str, ...]  # train.py overrides that choose a Hydra launcher, e.g. launcher=submitit_slurm
    parallel_sweeps: int = 1  # train.py sweeps at once (a cluster launcher: as many as the queue takes)
    description: str = ""
    variant_planners: dict[str, str] = field(default_factory=dict)  # variant -> its own planner preset

    def planner(self, dataset: SuiteDataset, variant: str) -> str:
        """The planner preset whose plans ``variant`` trains on for ``dataset``."""
        return self.variant_planners.get(variant, dataset.planner)

    def variant_overrides(self, variant: str) -> list[str]:
        """What every run of ``variant`` is given besides plan, fold and seed: variant, budget, common."""
        return [*self.variants[variant], *self.budget.overrides(), *self.overrides]


@dataclass(frozen=True)
class SuiteRun:
    dataset: str  # DatasetXXX_Name
    configuration: str
    plan: str  # plan=<Dataset>/<plan config name>
    variant: str
    fold: int
    seed: int

    def key(self) -> tuple[str, str, str, int, int]:
        return self.dataset, self.configuration, self.variant, self.fold, self.seed


def _unknown(given: Mapping[str, Any], valid: set[str], where: str) -> None:
    unknown = sorted(set(given) - valid)
    if unknown:
        raise UserError(f"{where}.{unknown[0]}: no such suite setting; valid: {', '.join(sorted(valid))}")


def _ints(value: Any, where: str, minimum: int) -> tuple[int, ...]:
    values = value if isinstance(value, list) else [value]
    if not values or any(not isinstance(v, int) or isinstance(v, bool) or v < minimum for v in values):
        raise UserError(f"{where}={value!r}: expected a list of integers >= {minimum}")
    return tuple(values)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    values = value if isinstance(value, list) else [value]
    if any(not isinstance(v, str) or not v for v in values):
        raise UserError(f"{where}={value!r}: expected a list of non-empty strings")
    return tuple(values)


def _configurations(value: Any, where: str) -> tuple[str, ...]:
    names = _strings(value, where)
    for name in names:
        if name not in TRAINABLE_CONFIGURATIONS:
            raise UserError(f"{where}: {name!r} is not a configuration nnlight trains; choose from "
                            f"{', '.join(TRAINABLE_CONFIGURATIONS)}")
    return names


def _dataset(entry: Any, where: str, planner: str, configurations: tuple[str, ...]) -> SuiteDataset:
    if isinstance(entry, (str, int)) and not isinstance(entry, bool):
        return SuiteDataset(str(entry), planner, configurations)
    if not isinstance(entry, dict) or "name" not in entry:
        raise UserError(f"{where}={entry!r}: a dataset is a name (DatasetXXX_Name, number or folder) or a mapping "
                        "with name: and optionally planner:, configurations:, synthetic:")
    _unknown(entry, _DATASET_KEYS, where)
    synthetic = entry.get("synthetic")
    if synthetic is not None:
        if not isinstance(synthetic, dict):
            raise UserError(f"{where}.synthetic: expected a mapping of {', '.join(sorted(_SYNTHETIC_KEYS))}")
        _unknown(synthetic, _SYNTHETIC_KEYS, f"{where}.synthetic")
        if not re.fullmatch(r"Dataset\d{3}_[A-Za-z0-9_-]+", str(entry["name"])):
            raise UserError(f"{where}.name={entry['name']!r}: a synthetic dataset needs a DatasetXXX_Name")
    return SuiteDataset(str(entry["name"]), str(entry.get("planner", planner)),
                        _configurations(entry.get("configurations", list(configurations)),
                                        f"{where}.configurations"), synthetic)


def _variants(value: Any) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """(name -> train.py overrides, name -> its own planner preset)."""
    if not isinstance(value, dict) or not value:
        raise UserError("suite.variants: expected a mapping of variant name -> list of train.py overrides (or an "
                        "experiment name), e.g. {baseline: [], dice: [loss=dice]}")
    variants, planners = {}, {}
    for name, entry in value.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(name)):
            raise UserError(f"suite.variants.{name}: a variant name may hold letters, digits and _ . - only")
        overrides = entry
        if isinstance(entry, dict):
            _unknown(entry, {"overrides", "planner"}, f"suite.variants.{name}")
            overrides = entry.get("overrides") or []
            if entry.get("planner"):
                planners[str(name)] = str(entry["planner"])
        if isinstance(overrides, str):
            overrides = [f"experiment={overrides}"]
        variants[str(name)] = _strings(overrides, f"suite.variants.{name}") if overrides else ()
    return variants, planners


def read_suite(node: Mapping[str, Any]) -> Suite:
    """The suite config (``cfg.suite`` as a plain mapping) checked key by key; ``UserError`` naming the key."""
    _unknown(node, _SUITE_KEYS, "suite")
    for key in ("name", "datasets", "variants", "baseline"):
        if node.get(key) in (None, "", []):
            raise UserError(f"suite.{key} is required (see configs/suite/smoke.yaml for a complete suite)")
    name = str(node["name"])
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise UserError(f"suite.name={name!r}: letters, digits and _ . - only (it names the results folder)")
    configurations = _configurations(node.get("configurations", ["3d_fullres"]), "suite.configurations")
    planner = str(node.get("planner", "default"))
    entries = node["datasets"] if isinstance(node["datasets"], list) else [node["datasets"]]
    datasets = tuple(_dataset(d, f"suite.datasets[{i}]", planner, configurations) for i, d in enumerate(entries))
    variants, variant_planners = _variants(node["variants"])
    if node["baseline"] not in variants:
        raise UserError(f"suite.baseline={node['baseline']}: not one of the variants ({', '.join(variants)})")
    budget = node.get("budget") or {}
    if not isinstance(budget, dict):
        raise UserError(f"suite.budget: expected a mapping of {', '.join(sorted(_BUDGET_KEYS))}")
    _unknown(budget, _BUDGET_KEYS, "suite.budget")
    for key, value in budget.items():
        _ints(value, f"suite.budget.{key}", 1)
    common = _strings(node["overrides"], "suite.overrides") if node.get("overrides") else ()
    for where, overrides in [("suite.overrides", common), *((f"suite.variants.{k}", v) for k, v in variants.items())]:
        if any(o.lstrip("+").startswith("debug=") for o in overrides):
            raise UserError(f"{where}: a debug profile makes no result; a suite's runs are real runs (set a short "
                            "budget: instead)")
    plan_overrides = _strings(node["plan_overrides"], "suite.plan_overrides") if node.get("plan_overrides") else ()
    if any(o.lstrip("+~").split("=")[0] in ("planner", "dataset") for o in plan_overrides):
        raise UserError("suite.plan_overrides: choose the planner preset with suite.planner (or a dataset's planner:) "
                        "and the datasets with suite.datasets")
    parallel = node.get("parallel_sweeps", 1)
    _ints(parallel, "suite.parallel_sweeps", 1)
    return Suite(name=name, datasets=datasets, folds=_ints(node.get("folds", [0, 1, 2, 3, 4]), "suite.folds", 0),
                 seeds=_ints(node.get("seeds", [12345]), "suite.seeds", 0), baseline=str(node["baseline"]),
                 variants=variants, budget=Budget(**budget),
                 overrides=common,
                 plan_overrides=plan_overrides,
                 launcher=_strings(node["launcher"], "suite.launcher") if node.get("launcher") else (),
                 parallel_sweeps=int(parallel), description=str(node.get("description", "")),
                 variant_planners=variant_planners)


def suite_runs(suite: Suite, planned: Mapping[tuple[str, str], Mapping[str, str]],
               presets: Mapping[str, str] | None = None) -> list[SuiteRun]:
    """Every run, in a stable order. ``planned`` maps (dataset, configuration) to {planner preset: plan config
    name}; ``presets`` a dataset's own planner preset (default: the only one planned). A variant runs on the plan
    of its own planner (``variant_planners``) where that planner planned the configuration."""
    runs = []
    for (dataset, configuration), plans in planned.items():
        default = (presets or {}).get(dataset) or next(iter(plans))
        for variant in suite.variants:
            plan = plans.get(suite.variant_planners.get(variant, default))
            if plan is not None:
                runs += [SuiteRun(dataset, configuration, plan, variant, fold, seed)
                         for seed in suite.seeds for fold in suite.folds]
    return runs


def run_overrides(suite: Suite, run: SuiteRun) -> list[str]:
    """train.py's overrides for one run (what a user would type to train it by hand)."""
    return [f"plan={run.plan}", f"data.fold={run.fold}", f"seed={run.seed}", *suite.variant_overrides(run.variant)]


def sweep_overrides(suite: Suite, runs: Sequence[SuiteRun]) -> list[str]:
    """One train.py multirun for runs that differ only in the fold."""
    first = runs[0]
    return [f"plan={first.plan}", f"data.fold={','.join(str(r.fold) for r in runs)}", f"seed={first.seed}",
            *suite.variant_overrides(first.variant), *suite.launcher]
