"""A run's folder comes from its resolved config: the same config is the same folder however it was typed, and no
value turns into a path outside the results folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnlight.pipeline.cli import composition_problem, train_run_folder
from nnlight.pipeline.config_dir import CONFIG_DIR
from nnlight.pipeline.run_names import MAX_DIFFERENCES_BYTES
from tests.conftest import Roots

pytestmark = pytest.mark.integration

PLAN = "plan=Dataset900_Demo/3d_fullres"


def _folder(*overrides: str) -> str:
    folder = train_run_folder([PLAN, *overrides])
    return str(folder.relative_to(folder.parents[3]))


def test_naming_the_default_names_the_default_run(planned: Roots) -> None:
    """``loss=dice_ce`` (the default) is the baseline's folder, not a new run that trains again."""
    baseline = _folder()
    assert baseline == "Dataset900_Demo/3d_fullres/baseline/fold_0"
    assert _folder("loss=dice_ce") == _folder("trainer.max_epochs=1000") == _folder("optimizer.lr=1e-2") == baseline
    assert _folder("experiment=nnUNetTrainerDA5", "augmentation=da5") == _folder("experiment=nnUNetTrainerDA5")


def test_a_group_an_option_sets_is_named_by_that_option_alone(planned: Roots) -> None:
    """``debug=overfit`` sets ``augmentation=none``; naming ``augmentation=default`` on top changes the config."""
    assert _folder("debug=overfit") == "Dataset900_Demo/3d_fullres/baseline[debug=overfit]/fold_0"
    assert _folder("debug=overfit", "augmentation=default") == \
        "Dataset900_Demo/3d_fullres/baseline[augmentation=default,debug=overfit]/fold_0"


def test_the_same_values_typed_differently_name_one_folder(planned: Roots) -> None:
    assert _folder("optimizer.lr=1e-3") == _folder("optimizer.lr=0.001") == \
        "Dataset900_Demo/3d_fullres/baseline[optimizer.lr=0.001]/fold_0"
    assert _folder("loss=dice", "trainer.max_epochs=50") == _folder("trainer.max_epochs=50", "loss=dice") == \
        "Dataset900_Demo/3d_fullres/baseline[loss=dice,trainer.max_epochs=50]/fold_0"
    # keys that change nothing trained (workers, logging, paths) never name a run
    assert _folder("data.num_workers=1", "logger=tensorboard") == _folder()


def test_values_never_nest_folders_and_names_stay_bounded(planned: Roots) -> None:
    escaped = _folder("+trainer.default_root_dir=../../../x")
    assert escaped.startswith("Dataset900_Demo/3d_fullres/baseline[trainer.default_root_dir=x#") and \
        escaped.count("/") == 3
    many = _folder(*(f"+augmentation.extra_{i}={'v' * 20}" for i in range(30)))
    name = many.split("/")[2]
    assert len(name.encode()) < MAX_DIFFERENCES_BYTES + 40 and "#" in name
    assert many != _folder(*(f"+augmentation.extra_{i}={'w' * 20}" for i in range(30)))  # the hash tells them apart


@pytest.mark.parametrize(("override", "message"), [
    ("plan.dataset=../../../outside", "plan.dataset='../../../outside': not a dataset name"),
    ("experiment_name=../escaped", "experiment_name='../escaped': not a plain folder name"),
    ("data.fold=../../x", "data.fold='../../x': not a fold"),
    ("plan.configuration=../x", "plan.configuration='../x': not a configuration name"),
    ("hydra.run.dir=/tmp/elsewhere", "/tmp/elsewhere lies outside"),
])
def test_a_value_that_would_leave_the_results_folder_is_refused(planned: Roots, override: str, message: str) -> None:
    """Checked on the command line, before Hydra makes a folder or opens train.log."""
    problem = composition_problem(CONFIG_DIR, "train", [PLAN, override])
    assert problem is not None and message in problem


def test_the_run_folder_lies_under_the_results_root(planned: Roots) -> None:
    folder = train_run_folder([PLAN, "loss=dice"])
    assert Path(planned.results).resolve() in folder.resolve().parents
