"""A run's folder comes from its resolved config: the same config is the same folder however it was typed, and no
value turns into a path outside the results folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nnlight.pipeline.cli import composition_problem, train_run_folder
from nnlight.pipeline.config_dir import CONFIG_DIR
from nnlight.pipeline.run_names import MAX_DIFFERENCES_BYTES
from tests.conftest import REPO, Roots

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
    assert _folder("debug=overfit") == "Dataset900_Demo/3d_fullres/baseline+debug-overfit/fold_0"
    assert _folder("debug=overfit", "augmentation=default") == \
        "Dataset900_Demo/3d_fullres/baseline+augmentation-default+debug-overfit/fold_0"


def test_the_same_values_typed_differently_name_one_folder(planned: Roots) -> None:
    assert _folder("optimizer.lr=1e-3") == _folder("optimizer.lr=0.001") == \
        "Dataset900_Demo/3d_fullres/baseline+optimizer.lr-0.001/fold_0"
    assert _folder("loss=dice", "trainer.max_epochs=50") == _folder("trainer.max_epochs=50", "loss=dice") == \
        "Dataset900_Demo/3d_fullres/baseline+loss-dice+trainer.max_epochs-50/fold_0"
    # keys that change nothing trained (workers, logging, paths) never name a run
    assert _folder("data.num_workers=1", "logger=tensorboard") == _folder()


def test_values_never_nest_folders_and_names_stay_bounded(planned: Roots) -> None:
    escaped = _folder("+trainer.default_root_dir=../../../x")
    assert escaped.startswith("Dataset900_Demo/3d_fullres/baseline+trainer.default_root_dir-x+hash-") and \
        escaped.count("/") == 3
    many = _folder(*(f"+augmentation.extra_{i}={'v' * 20}" for i in range(30)))
    name = many.split("/")[2]
    assert len(name.encode()) < MAX_DIFFERENCES_BYTES + 40 and "+hash-" in name
    assert many != _folder(*(f"+augmentation.extra_{i}={'w' * 20}" for i in range(30)))  # the hash tells them apart


def test_names_need_no_quoting_and_a_network_option_names_the_run(planned: Roots) -> None:
    """No character a shell or Hydra's override grammar treats specially; ``model=``/``models=`` take the name as
    typed; with no experiment the network option is the run's name."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    names = [_folder(*o).split("/")[2] for o in (("network=segresnet", "network.adapt_patch=true"),
                                                 ("optimizer.lr=1e-3", "+data.patch_size=[16,32,32]"),
                                                 ("+trainer.default_root_dir=../x y",))]
    assert names[0] == "segresnet+network.adapt_patch-true"
    assert names[1] == "baseline+data.patch_size-16:32:32+optimizer.lr-0.001"
    for name in names:
        assert not set(name) & set("[],'\"() #~=/"), name
    parsed = OverridesParser.create().parse_overrides([f"models=[3d_fullres/{names[0]},3d_fullres/{names[1]}]"])
    assert parsed[0].value() == [f"3d_fullres/{names[0]}", f"3d_fullres/{names[1]}"]


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


def _record(folder: Path, overrides: list[str], evaluation_settings: bool) -> None:
    """A model folder's fold_0 as train.py records it; ``evaluation_settings``: as an nnlight before today's
    identity rule recorded it (metrics and validation inside)."""
    from nnlight.pipeline.identity import config_hash
    from tests.pipeline.test_train_config import _parsed_in_a_run

    config = _parsed_in_a_run([PLAN, *overrides], folder / "fold_0")
    identity = {**config.identity, **({k: config.resolved[k] for k in ("metrics", "validation")}
                                      if evaluation_settings else {})}
    (folder / "fold_0").mkdir(parents=True)
    (folder / "fold_0" / "run_config.json").write_text(json.dumps({"config_hash": config_hash(identity),
                                                                   "config": identity}))


def test_a_trained_model_is_found_by_its_identity_however_it_is_spelt_or_was_named(
        planned: Roots, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An equivalent spelling (the lab's network YAML, or the same class and arguments inline), an evaluation-only
    setting, or a folder named by an earlier nnlight: the model already trained, every fold of it."""
    monkeypatch.setenv("NNLIGHT_CONFIG_DIR", str(REPO / "tests" / "byo_method" / "configs"))
    monkeypatch.syspath_prepend(str(REPO / "tests" / "byo_method"))  # parse checks the class exists
    by_option = ["network=tiny_skip"]
    inline = ["network=custom", "network._target_=my_lab.nets.TinySkipNet",
              "+network.from_plan.in_channels=input_channels", "+network.from_plan.n_classes=num_classes",
              "+network.from_plan.dims=spatial_dims", "+network.width=8"]
    assert _folder(*by_option) == "Dataset900_Demo/3d_fullres/tiny_skip/fold_0"
    assert _folder(*inline) != _folder(*by_option)  # nothing trained yet: each spelling names a new run
    configuration = planned.results / "Dataset900_Demo" / "3d_fullres"
    _record(configuration / "tiny_skip", by_option, evaluation_settings=False)
    for overrides in (inline, [*inline, "metrics=volume", "validation.mirroring=false"]):
        assert _folder(*overrides) == "Dataset900_Demo/3d_fullres/tiny_skip/fold_0"
        assert _folder(*overrides, "data.fold=1") == "Dataset900_Demo/3d_fullres/tiny_skip/fold_1"
    assert _folder(*inline, "network.width=16").split("/")[2] != "tiny_skip"  # another method: its own folder

    shutil.rmtree(configuration / "tiny_skip")
    _record(configuration / "baseline[network=tiny_skip]", by_option, evaluation_settings=True)  # named before
    assert _folder(*by_option) == "Dataset900_Demo/3d_fullres/baseline[network=tiny_skip]/fold_0"
