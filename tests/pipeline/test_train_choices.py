"""train.py trains what its name says: unknown choices and contradictions are refused before anything is
written, dataset facts (regions, ignore label, cascade) come from the plan, every new option family trains."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from nnlight.raw.synthetic import make_synthetic_dataset
from tests.conftest import TINY_BUDGET, TINY_NAME, Roots, planned_demo, run_script

pytestmark = pytest.mark.cli


@pytest.fixture(scope="module")
def roots(planned_demo_template: Roots, tmp_path_factory: pytest.TempPathFactory) -> Roots:
    """The 3D demo plus a region dataset and a sparsely annotated one (ignore label), all planned."""
    planned = planned_demo(planned_demo_template, tmp_path_factory.mktemp("choices"))
    for dataset_id, name, kind in ((910, "Regions", "regions"), (911, "Ignore", "ignore")):
        make_synthetic_dataset(planned.raw, dataset_id, name, num_cases=5, shape=(16, 32, 28), num_test_cases=0,
                               **{kind: True})
        result = run_script("plan.py", f"dataset=Dataset{dataset_id}_{name}", "num_workers=0", roots=planned)
        assert result.returncode == 0, result.stderr[-2000:]
    return planned


def _files(roots: Roots) -> set[Path]:
    return set(roots.files_under_outputs())


def _run(name: str, roots: Roots, dataset: str = "Dataset900_Demo", configuration: str = "3d_fullres") -> Path:
    return roots.results / dataset / configuration / name / "fold_0"


@pytest.mark.parametrize(("overrides", "expected"), [
    (["loss=foo"], "loss=foo: no such option; choose one of ce, custom, dice, dice_ce, dice_topk10, topk10"),
    (["optimizer=sgd"], "optimizer=sgd: no such option; choose one of adam, adamw, adan, sgd_nesterov"),
    (["scheduler=step"], "scheduler=step: no such option; choose one of cosine, poly, warmup_poly"),
    (["experiment=nnUNetTrainerFoo"], "experiment=nnUNetTrainerFoo: no such option; choose one of baseline, "),
    (["loss.smooth=0"], "loss.smooth: no such setting; valid: loss.batch_dice, loss.class_weights, loss.dice_smooth"),
    (["-m", "loss=dice,dice_bce"], "loss=dice_bce: no such option"),
    (["plan=Dataset900_Demo/3d_lowres"], "plan=Dataset900_Demo/3d_lowres: no such option; choose one of "
                                         "Dataset900_Demo/2d, Dataset900_Demo/3d_fullres"),
    (["data.fold=7"], "data.fold=7 is out of range: Dataset900_Demo has folds 0..4 (or data.fold=all)"),
    (["+hydra.callbacks.x._target_=os.system", "+hydra.callbacks.x.command=true"],
     "hydra.callbacks.x: 'os.system' would run before any check"),
    (["paths.results=/proc/results"], "paths.results=/proc/results: /proc cannot be written"),
    (["plan.dataset=../../../outside"], "plan.dataset='../../../outside': not a dataset name"),
    (["optimizer.lr=nan"], "optimizer.lr=nan: not a finite number"),
])
def test_an_unknown_choice_is_named_with_the_valid_ones_and_nothing_is_written(roots: Roots, overrides: list[str],
                                                                            expected: str) -> None:
    """Group options and keys are checked before Hydra starts; values when the stage reads its settings (the
    folder Hydra made for the run is removed again: data.fold=7 leaves no fold_7 behind)."""
    before = _files(roots)
    plan = [] if any(o.startswith("plan=") for o in overrides) else ["plan=Dataset900_Demo/3d_fullres"]
    result = run_script("train.py", *plan, "debug=fast_dev_run", *overrides, roots=roots)
    assert result.returncode == 2, result.stderr[-2000:]
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert _files(roots) == before


@pytest.mark.parametrize(("overrides", "expected"), [
    (["+loss.smooth=0"], "unknown setting(s) loss.smooth; valid: batch_dice, class_weights, dice_smooth"),
    (["network.norm=group"], "could not be built from norm='group', deep_supervision=True, "
                             "input_channels=2, num_classes=3, architecture=...: ValueError: norm='group': choose "
                             "one of instance, batch"),
    (["data.fold=abc"], "data.fold='abc': expected an int or one of 'all'"),
    (["plan.batch_size=0"], "batch_size=0 is out of range"),
    (["optimizer.lr=fast"], "optimizer (torch.optim.sgd.SGD) could not be created with lr='fast'"),
    (["+optimizer.betas=[0.9,0.99]"], "optimizer: SGD has no argument(s) betas; valid: params, lr, momentum"),
    (["optimizer._target_=torch.optim.Adamm"], "optimizer._target_='torch.optim.Adamm': no such class"),
    (["optimizer._target_=os.system"], "optimizer._target_='os.system' is not a torch.optim.optimizer.Optimizer"),
    (["scheduler.warmup_epochs=5000", "scheduler=warmup_poly"], "warmup_epochs=5000 must be between 1 and"),
    (["data.iterations_per_epoch=0"], "iterations_per_epoch=0 is out of range"),
    (["augmentation.mirror_axes=[3]"], "mirror_axes=[3]: the axes are 0, 1, 2"),
    (["augmentation.seg_interpolation=cubic"], "augmentation.seg_interpolation='cubic': expected one of 'linear'"),
    (["data.oversampling=sometimes"], "data.oversampling='sometimes': expected one of 'last_in_batch'"),
    (["+trainer.max_epoch=3"], "trainer.max_epoch: not a Lightning Trainer argument"),
    (["data.patch_size=[30,30,30]"], "needs a patch divisible by [2, 4, 4] per axis; data.patch_size=[30, 30, 30] is "
                                     "not. Nearest valid patch: [30, 32, 32]"),
    (["+logger.images_every_n_epochs=5"], "logger.images_every_n_epochs=5: none of the chosen loggers shows images"),
    (["logger=tensorboard", "logger.images_every_n_epochs=0"], "logger.images_every_n_epochs=0: use a whole number"),
    (["optimizer.lr=nan"], "optimizer.lr=nan: not a finite number"),
    (["optimizer.lr=inf"], "optimizer.lr=inf: not a finite number"),
    (["optimizer.weight_decay=-inf"], "optimizer.weight_decay=-inf: not a finite number"),
    (["augmentation.p_rotation=nan"], "augmentation.p_rotation=nan: not a finite number"),
    (["optimizer.lr=-0.01"], "could not be created with lr=-0.01"),
    (["nonfinite_loss_patience=0"], "nonfinite_loss_patience=0: use a whole number of training steps >= 1"),
    (["+trainer.default_root_dir=../../x"], "trainer.default_root_dir: set by nnlight (the run folder)"),
])
def test_a_wrong_value_is_named_before_training(roots: Roots, overrides: list[str], expected: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """What the stage checks first, in-process: the same checks train.py runs before it writes anything."""
    from hydra import compose, initialize_config_dir

    from nnlight.pipeline.train_config import parse
    from nnlight.pipeline.train_setup import prepare
    from nnlight.utils.errors import UserError
    from tests.conftest import REPO

    monkeypatch.setenv("NNLIGHT_PREPROCESSED", str(roots.preprocessed))
    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["plan=Dataset900_Demo/3d_fullres", f"paths.raw={roots.raw}",
                                          f"paths.preprocessed={roots.preprocessed}", *overrides])
    with pytest.raises(UserError) as error:
        prepare(parse(cfg))
    assert expected in str(error.value)


@pytest.mark.parametrize(("content", "expected"), [
    ("# @package _global_\nhydra:\n  callbacks:\n    x:\n      _target_: pathlib.Path\n",
     "may not carry an @package header"),
    ("defaults:\n  - Dataset900_Demo/3d_fullres@_here_\n  - _self_\n\nextra:\n  _target_: os.getcwd\n",
     "'hydra' settings and '_target_' are not allowed"),
    ("defaults:\n  - /callbacks@_global_.callbacks: none\n  - _self_\n", "defaults entry"),
    ("defaults:\n  - Dataset900_Demo/evil_parent@_here_\n  - _self_\n", "evil_parent.yaml: a plan config holds"),
])
def test_a_plan_config_holds_values_only(roots: Roots, content: str, expected: str) -> None:
    """Plan configs are shared data: one that could set other groups, Hydra's settings or a _target_ is refused
    before Hydra reads it (Hydra would act on its hydra: block before any stage runs)."""
    folder = roots.preprocessed / "configs" / "plan" / "Dataset900_Demo"
    (folder / "evil_parent.yaml").write_text("hydra:\n  job:\n    chdir: true\n")
    (folder / "shared.yaml").write_text(content)
    before = _files(roots)
    try:
        result = run_script("train.py", "plan=Dataset900_Demo/shared", "debug=fast_dev_run", roots=roots)
    finally:
        (folder / "shared.yaml").unlink()
        (folder / "evil_parent.yaml").unlink()
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr
    assert _files(roots) - before == set()


def test_help_lists_every_group_with_its_options(roots: Roots) -> None:
    for extra in ([], ["plan=Dataset900_Demo/2d"]):
        result = run_script("train.py", *extra, "--help", roots=roots)
        assert result.returncode == 0 and "Traceback" not in result.stderr
        assert "loss: ce, custom, dice, dice_ce*, dice_topk10, topk10" in result.stdout
        assert "plan: Dataset900_Demo/2d, Dataset900_Demo/3d_fullres, Dataset910_Regions/2d" in result.stdout
        assert "nnUNetTrainerDA5" in result.stdout and "network: custom, default*, dynunet" in result.stdout


def test_a_region_dataset_trains_region_based_by_default(roots: Roots) -> None:
    result = run_script("train.py", "plan=Dataset910_Regions/2d", *TINY_BUDGET, roots=roots)
    assert result.returncode == 0, result.stderr[-3000:]
    run = _run(f"baseline+{TINY_NAME}", roots, "Dataset910_Regions", "2d")
    state = torch.load(run / "checkpoints" / "final.ckpt", weights_only=True)["state_dict"]
    head = next(v for k, v in state.items() if k.endswith("seg_layers.0.weight"))
    assert head.shape[0] == 2  # one sigmoid output per region, no background
    assert set(json.loads((run / "validation" / "summary.json").read_text())["mean"]) == {"1,2", "2"}
    evaluated = run_script("evaluate.py", "dataset=Dataset910_Regions", "folds=[0]", roots=roots)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    crossval = json.loads((run.parent / "crossval" / "summary.json").read_text())
    assert set(crossval["mean"]) == {"1,2", "2"}  # cross-validation Dice per region


def test_a_loss_that_contradicts_the_dataset_is_refused(roots: Roots) -> None:
    before = _files(roots)
    result = run_script("train.py", "plan=Dataset910_Regions/2d", "debug=fast_dev_run", "loss=ce", roots=roots)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "loss.name=ce contradicts Dataset910_Regions: its labels are 2 regions" in result.stderr
    assert _files(roots) == before


def test_an_ignore_label_dataset_trains_and_validates_with_no_option(roots: Roots) -> None:
    result = run_script("train.py", "plan=Dataset911_Ignore/2d", "debug=limit", roots=roots)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((_run("baseline+debug-limit", roots, "Dataset911_Ignore", "2d") / "validation" /
                          "summary.json").read_text())
    assert set(summary["mean"]) == {"1", "2"}  # the ignore label is neither trained nor scored
    assert all(np.isfinite(v["Dice"]) for v in summary["mean"].values())


@pytest.mark.parametrize(("experiment", "combined_with"), [
    ("nnUNetTrainerBN", "network.deep_supervision=false"),  # + nnUNetTrainerNoDeepSupervision
    ("nnUNetTrainerDA5", "data.oversampling=random_at_batch_rate"),  # + nnUNetTrainer_probabilisticOversampling
])
def test_each_new_option_family_trains_and_predicts(roots: Roots, experiment: str, combined_with: str) -> None:
    """nnU-Net's variants by name (two families per run, as options combine freely): a short training, then the
    run folder predicts, with the network rebuilt as it was trained."""
    from nnlight.inference.predictor import Predictor

    result = run_script("train.py", "plan=Dataset900_Demo/3d_fullres", f"experiment={experiment}", combined_with,
                        "debug=limit", "validation.enabled=false", roots=roots)
    assert result.returncode == 0, result.stderr[-3000:]
    items = sorted(item.replace("=", "-", 1) for item in (combined_with, "debug=limit"))  # validation: no part of it
    run = _run(f"{experiment}+{'+'.join(items)}", roots)
    choices = json.loads((run / "inference.json").read_text())
    batch_norm = experiment == "nnUNetTrainerBN"
    assert choices["network"]["arguments"] == {"norm": "batch" if batch_norm else "instance",
                                               "deep_supervision": not batch_norm}
    assert choices["network"]["deep_supervision_outputs"] == (1 if batch_norm else 2)  # the plan's U-Net: 3 stages
    predictor = Predictor.from_model_folder(run, mirroring=False, device="cpu")
    norms = {type(m).__name__ for m in predictor.networks[0].modules()}
    assert ("BatchNorm3d" in norms) == batch_norm
    segmentation = predictor.predict(np.random.default_rng(0).normal(size=(2, 16, 32, 28)), (2.5, 1.0, 1.0))
    assert segmentation.segmentation.shape == (16, 32, 28)


def test_the_training_patch_is_the_validation_and_prediction_tile(roots: Roots) -> None:
    config = (roots.preprocessed / "configs" / "plan" / "Dataset900_Demo" / "3d_fullres.yaml").read_text()
    strides = json.loads(config.split("strides: ")[1].splitlines()[0])
    total = [int(np.prod([s[a] for s in strides])) for a in range(3)]
    patch = [t * 2 for t in total]
    override = f"data.patch_size=[{','.join(map(str, patch))}]"
    result = run_script("train.py", "plan=Dataset900_Demo/3d_fullres", "debug=fast_dev_run", override, roots=roots)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = roots.results / "Dataset900_Demo" / "3d_fullres"
    run = next(p for p in folder.iterdir() if p.name.startswith("baseline+data.patch_size-")) / "fold_0"
    assert json.loads((run / "inference.json").read_text())["tile_size"] == patch
    shutil.rmtree(run.parent)


def test_an_ema_of_the_weights_is_validated_and_saved(roots: Roots) -> None:
    """callbacks=ema: the run's checkpoints hold the averaged weights (what validation and prediction use) and the
    raw ones, and its name says so; nnU-Net's default trains without it."""
    from nnlight.model.checkpoints import load_checkpoint

    result = run_script("train.py", "plan=Dataset900_Demo/2d", "callbacks=ema", "debug=limit",
                        "callbacks.ema.decay=0.5", roots=roots)
    assert result.returncode == 0, result.stderr[-3000:]
    run = _run("baseline+callbacks-ema+callbacks.ema.decay-0.5+debug-limit", roots, configuration="2d")
    checkpoint = load_checkpoint(run / "checkpoints" / "final.ckpt")
    assert int(checkpoint["averaging_state"]["n_averaged"]) == checkpoint["global_step"] == 4  # 2 epochs x 2 steps
    averaged, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert averaged.keys() == raw.keys()
    assert json.loads((run / "validation" / "summary.json").read_text())["foreground_mean"]["Dice"] >= 0
