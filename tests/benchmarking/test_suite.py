"""Suite configs are checked key by key and expand to train.py runs exactly as a user would type them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from nnlight.benchmarking.suite import SuiteRun, read_suite, run_overrides, suite_runs, sweep_overrides
from nnlight.utils.errors import UserError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _suite(**changes: Any) -> dict[str, Any]:
    return {"name": "s", "datasets": ["Dataset001_A"], "baseline": "base",
            "variants": {"base": [], "dice": ["loss=dice"]}, "configurations": ["2d"], "folds": [0, 1]} | changes


@pytest.mark.parametrize("name", ["smoke", "shared_cpu", "nnunet_full"])
def test_the_built_in_suites_are_valid(name: str) -> None:
    suite = read_suite(OmegaConf.to_container(OmegaConf.load(CONFIGS / "suite" / f"{name}.yaml")))
    assert suite.name == name and suite.baseline in suite.variants and len(suite.variants) >= 2


def test_an_experiment_name_is_a_variant_and_runs_are_typed_overrides() -> None:
    suite = read_suite(_suite(variants={"base": [], "da5": "nnUNetTrainerDA5"}, budget={"max_epochs": 3},
                              overrides=["data.num_workers=0"], seeds=[1, 2]))
    assert suite.variants["da5"] == ("experiment=nnUNetTrainerDA5",)
    runs = suite_runs(suite, {("Dataset001_A", "2d"): {"default": "Dataset001_A/2d"}})
    assert len(runs) == 2 * 2 * 2  # variants x seeds x folds
    run = SuiteRun("Dataset001_A", "2d", "Dataset001_A/2d", "da5", 1, 2)
    assert run_overrides(suite, run) == ["plan=Dataset001_A/2d", "data.fold=1", "seed=2", "experiment=nnUNetTrainerDA5",
                                         "trainer.max_epochs=3", "data.num_workers=0"]
    assert sweep_overrides(suite, [run, SuiteRun("Dataset001_A", "2d", "Dataset001_A/2d", "da5", 3, 2)])[1] == \
        "data.fold=1,3"


@pytest.mark.parametrize(("changes", "message"), [
    ({"epochs": 3}, "suite.epochs: no such suite setting"),
    ({"baseline": "nnunet"}, "suite.baseline=nnunet: not one of the variants (base, dice)"),
    ({"configurations": ["3d_fulres"]}, "'3d_fulres' is not a configuration nnlight trains"),
    ({"configurations": ["3d_cascade_fullres"]}, "is not a configuration nnlight trains"),
    ({"folds": [0, -1]}, "suite.folds=[0, -1]: expected a list of integers >= 0"),
    ({"budget": {"max_epoch": 2}}, "suite.budget.max_epoch: no such suite setting"),
    ({"datasets": [{"name": "Smoke", "synthetic": {"num_cases": 4}}]}, "a synthetic dataset needs a DatasetXXX_Name"),
    ({"variants": {"base": [], "my variant": []}}, "suite.variants.my variant: a variant name may hold"),
    ({"name": "../x"}, "suite.name='../x': letters, digits"),
    ({"variants": {"base": [], "quick": ["debug=limit"]}}, "suite.variants.quick: a debug profile makes no result"),
])
def test_a_wrong_suite_setting_is_named(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        read_suite(_suite(**changes))


def test_a_variant_with_its_own_planner_trains_on_that_planners_plan() -> None:
    suite = read_suite(_suite(variants={"base": [], "resenc": {"planner": "resenc_m", "overrides": ["loss=dice"]}}))
    assert suite.variants["resenc"] == ("loss=dice",) and suite.variant_planners == {"resenc": "resenc_m"}
    planned = {("Dataset001_A", "2d"): {"default": "Dataset001_A/2d", "resenc_m": "Dataset001_A/2d_resenc_m"},
               ("Dataset002_B", "2d"): {"default": "Dataset002_B/2d"}}  # ResEnc did not plan B's 2d
    runs = suite_runs(suite, planned, {"Dataset001_A": "default", "Dataset002_B": "default"})
    plans = {(r.dataset, r.variant): r.plan for r in runs}
    assert plans[("Dataset001_A", "resenc")] == "Dataset001_A/2d_resenc_m"
    assert plans[("Dataset001_A", "base")] == "Dataset001_A/2d" and ("Dataset002_B", "resenc") not in plans
    with pytest.raises(UserError, match=r"suite\.variants\.resenc\.planer: no such suite setting"):
        read_suite(_suite(variants={"base": [], "resenc": {"planer": "resenc_m"}}))


@pytest.mark.parametrize("name", ["architectures", "architectures_smoke", "architectures_shared_cpu"])
def test_the_architecture_suites_read_and_name_their_networks(name: str) -> None:
    node = OmegaConf.to_container(OmegaConf.load(CONFIGS / "suite" / f"{name}.yaml"))
    suite = read_suite(node)
    assert suite.baseline == "nnunet" and suite.variant_planners.get("resenc_m") == "resenc_m"
    assert {"mednext", "swinunetr", "segresnet"} <= {o.split("=")[1].split("_")[0] for v in suite.variants.values()
                                                     for o in v if o.startswith("network=")}
