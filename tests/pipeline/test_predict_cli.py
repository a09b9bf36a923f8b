"""predict.py and evaluate.py end to end on the synthetic demo: trained folds → CV → best → prediction."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnlight.evaluation.postprocessing_search import PostprocessingRules, apply_postprocessing
from nnlight.evaluation.selection import load_best
from nnlight.inference.export import written_completely
from nnlight.inference.predictor import Predictor
from nnlight.raw.io import image_format, read_images
from nnlight.utils.errors import UserError
from nnlight.utils.folders import Comparison, DatasetResults
from tests.conftest import (
    REPO,
    TINY_BUDGET,
    TINY_NAME,
    Roots,
    file_size_limit,
    planned_demo,
    run_entry,
    run_script,
    small_disk,
)

pytestmark = pytest.mark.cli

TRAIN = [*TINY_BUDGET, "validation.mirroring=false"]
RUN = f"baseline+{TINY_NAME}"


@pytest.fixture(scope="module")
def trained(planned_demo_template: Roots, tmp_path_factory: pytest.TempPathFactory) -> Roots:
    """The demo planned, fold 0 of 2d and 3d_fullres trained briefly, and evaluate.py run over them."""
    roots = planned_demo(planned_demo_template, tmp_path_factory.mktemp("predict"))
    for configuration in ("2d", "3d_fullres"):
        result = run_script("train.py", f"plan=Dataset900_Demo/{configuration}", *TRAIN, roots=roots)
        assert result.returncode == 0, result.stderr[-3000:]
    # dataset= as a folder path: evaluate's log goes under the results folder, never into the raw folder
    result = run_script("evaluate.py", f"dataset={roots.raw / 'Dataset900_Demo'}", "folds=[0]", roots=roots)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Best:" in result.stdout
    return roots


def _latest(roots: Roots) -> Comparison:
    latest = DatasetResults(roots.results / "Dataset900_Demo").latest()
    assert latest is not None, "no comparison written"
    return latest


def _validation_images(roots: Roots, target: Path) -> list[str]:
    """The fold-0 validation cases' images, copied into ``target`` (what cross-validation predicted)."""
    run = roots.results / "Dataset900_Demo" / "3d_fullres" / RUN / "fold_0"
    cases = [e["case"] for e in json.loads((run / "validation" / "summary.json").read_text())["metric_per_case"]]
    target.mkdir()
    for case in cases:
        for f in (roots.raw / "Dataset900_Demo" / "imagesTr").glob(f"{case}_*.nii.gz"):
            shutil.copy(f, target / f.name)
    return cases


def test_evaluate_writes_the_cv_table_plot_and_best_choice(trained: Roots) -> None:
    results = trained.results / "Dataset900_Demo"
    comparison = _latest(trained)
    best = json.loads(comparison.best_configuration.read_text())
    names = set(best["candidates"])
    assert {f"2d/{RUN}", f"3d_fullres/{RUN}", f"2d/{RUN} + 3d_fullres/{RUN}"} == names
    chosen = best["candidates"][best["selected"]["name"]]["foreground_mean"]["Dice"]
    assert chosen == max(c["foreground_mean"]["Dice"] for c in best["candidates"].values())
    table = comparison.cv_table.read_text()
    assert comparison.cv_plot.stat().st_size > 1000
    assert "| model | folds | n cases | Dice (mean ± std over folds) |" in table
    assert "**Compared on folds 0 only** (of 5)" in table and "| 1/5 |" in table  # folds=[0], as asked
    assert comparison.cv_csv.read_text().startswith("model,selected,n_folds,n_cases,dice_mean,dice_std_over_folds")
    assert comparison.name.startswith("folds0_2models_")  # derived from its candidates and folds
    assert best["selected"]["cv_complete"] is False and best["folds"] == ["0"]
    crossval = json.loads((results / "3d_fullres" / RUN / "crossval" / "summary.json").read_text())
    assert {"Dice", "IoU", "HD95", "NSD"} <= set(crossval["foreground_mean"])
    assert (results / "3d_fullres" / RUN / "crossval" / "summary.csv").read_text().startswith("case,label,Dice")
    assert "Best:" in (results / "evaluate.log").read_text()  # what evaluate.py printed, kept beside its results
    assert not (trained.raw / "Dataset900_Demo" / "evaluate.log").exists()  # given as a folder, not written into
    for candidate in best["candidates"].values():  # per-fold means: the spread cv_results.png draws (one fold here)
        assert candidate["fold_foreground_dice"] == {"0": pytest.approx(candidate["foreground_mean"]["Dice"])}


def test_model_best_reproduces_the_selected_ensemble(trained: Roots, tmp_path: Path) -> None:
    cases = _validation_images(trained, tmp_path / "images")
    result = run_script("predict.py", "model=best", "dataset=Dataset900_Demo", f"input={tmp_path / 'images'}",
                        f"output={tmp_path / 'out'}", "mirroring=false", roots=trained)  # as validated
    assert result.returncode == 0, result.stderr[-3000:]
    results = trained.results / "Dataset900_Demo"
    best = json.loads(_latest(trained).best_configuration.read_text())["selected"]
    rules = PostprocessingRules.load(_latest(trained).postprocessing)
    assert f"selected by comparison {_latest(trained).name}" in result.stdout  # which comparison model=best used
    if len(best["members"]) == 2:
        cv_folder = next((results / "ensembles").iterdir())
    else:
        cv_folder = results / best["members"][0]["model"] / "crossval"
    for case in cases:
        predicted = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / f"{case}.nii.gz")))
        cross_validated = sitk.GetArrayFromImage(sitk.ReadImage(str(cv_folder / f"{case}.nii.gz")))
        expected = apply_postprocessing(cross_validated, rules, [1, 2])
        assert np.array_equal(predicted, expected), case
    assert (tmp_path / "out" / ".hydra" / "config.yaml").is_file()  # the prediction says how it was made
    assert "Predicted" in (tmp_path / "out" / "predict.log").read_text()  # and what it printed


def test_prediction_keeps_an_unusual_input_geometry_and_resumes(trained: Roots, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    direction = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)  # axes permuted and flipped
    for channel in (0, 1):
        image = sitk.ReadImage(str(trained.raw / "Dataset900_Demo" / "imagesTr" / f"demo_000_{channel:04d}.nii.gz"))
        image.SetDirection(direction)
        image.SetOrigin((-17.3, 4.25, 101.9))
        image.SetSpacing((0.7, 1.3, 3.1))
        sitk.WriteImage(image, str(images / f"odd_{channel:04d}.nii.gz"))
        sitk.WriteImage(image, str(images / f"second_{channel:04d}.nii.gz"))
    model = trained.results / "Dataset900_Demo" / "3d_fullres" / RUN
    args = [f"model='{model}'", f"input={images}", f"output={tmp_path / 'out'}", "mirroring=false",
            "save_probabilities=true", "postprocessing=false"]
    first = run_script("predict.py", *args, roots=trained)
    assert first.returncode == 0, first.stderr[-3000:]
    reference = sitk.ReadImage(str(images / "odd_0000.nii.gz"))
    predicted = sitk.ReadImage(str(tmp_path / "out" / "odd.nii.gz"))
    assert predicted.GetSize() == reference.GetSize() and predicted.GetSpacing() == reference.GetSpacing()
    assert predicted.GetOrigin() == reference.GetOrigin() and predicted.GetDirection() == reference.GetDirection()
    probabilities = np.load(tmp_path / "out" / "odd.npz")["probabilities"]
    assert probabilities.shape == (3, *sitk.GetArrayFromImage(reference).shape)
    assert np.allclose(probabilities.astype(np.float32).sum(0), 1, atol=5e-3)
    # the segmentation comes from resampled logits (as nnU-Net), the file holds resampled probabilities
    assert (sitk.GetArrayFromImage(predicted) != probabilities.argmax(0)).mean() < 0.01

    (tmp_path / "out" / "second.nii.gz").unlink()  # as if interrupted before the second case was written
    again = run_script("predict.py", *args, roots=trained)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Predicted 1 case(s)" in again.stdout and "1 already done, skipped" in again.stdout


@pytest.mark.parametrize(("setup", "message"), [
    ("missing_channel", "missing channel file(s) case_0001.nii.gz"),
    ("wrong_ending", "file ending '.mha'"),
    ("no_checkpoints", "checkpoint not found"),
    ("not_a_model", "no trained model here"),
    ("no_inference_file", "inference.json: not found"),
    ("bad_checkpoint", "predict.checkpoint='newest': expected one of 'final', 'best', 'last'"),
    ("step_size", "step_size=0.0: use a value in (0, 1]"),
    ("precision", "precision=fp8: choose auto, 32, 16-mixed, bf16-mixed"),
    ("tile_batch", "tile_batch=0: use auto or a number of tiles >= 1"),
    ("scores_dtype", "predict.scores_dtype='half': expected one of 'float32', 'float16', 'bfloat16'"),
    ("match_iou", "evaluation.match_iou=1.5: the IoU at which objects match must lie in (0, 1]"),
    ("truncated_image", "case_0001.nii.gz: the compressed file is truncated or corrupt"),
    ("image_2d", "a 2D image, but the model is a 3D configuration"),
    ("truncated_checkpoint", "final.ckpt: cannot be read as a checkpoint"),
    ("output_under_a_file", "a_file is not a folder; choose an output folder you can write to"),
    ("nan_nifti", "case_0001.nii.gz: contains NaN or Inf voxels"),
])
def test_user_mistakes_end_with_a_clear_message(trained: Roots, tmp_path: Path, setup: str, message: str) -> None:
    images = tmp_path / "images"
    images.mkdir()
    source = trained.raw / "Dataset900_Demo" / "imagesTr"
    model = trained.results / "Dataset900_Demo" / "3d_fullres" / RUN
    shutil.copy(source / "demo_000_0000.nii.gz", images / "case_0000.nii.gz")
    if setup != "missing_channel":
        shutil.copy(source / "demo_000_0001.nii.gz", images / "case_0001.nii.gz")
    if setup == "wrong_ending":
        sitk.WriteImage(sitk.ReadImage(str(source / "demo_001_0000.nii.gz")), str(images / "other_0000.mha"))
    if setup == "truncated_image":
        data = (images / "case_0001.nii.gz").read_bytes()
        (images / "case_0001.nii.gz").write_bytes(data[: len(data) // 2])  # read as zeros by SimpleITK alone
    if setup == "nan_nifti":  # SimpleITK alone reads NaN/Inf NIfTI voxels as 0
        image = sitk.ReadImage(str(images / "case_0001.nii.gz"), sitk.sitkFloat32)
        array = sitk.GetArrayFromImage(image)
        array[1, 2, 3] = np.inf
        nan_image = sitk.GetImageFromArray(array)
        nan_image.CopyInformation(image)
        sitk.WriteImage(nan_image, str(images / "case_0001.nii.gz"))
    if setup == "image_2d":
        for channel in (0, 1):
            sitk.WriteImage(sitk.GetImageFromArray(np.ones((32, 28), np.float32)), str(images / f"case_000{channel}"
                                                                                      ".nii.gz"))
    left_out = {"no_checkpoints": "*.ckpt", "no_inference_file": "inference.json"}.get(setup)
    if left_out or setup == "truncated_checkpoint":  # a copy of the run folder without those files, or damaged
        shutil.copytree(model / "fold_0", tmp_path / "model" / "fold_0", ignore=shutil.ignore_patterns(left_out or ""))
        model = tmp_path / "model"
        checkpoint = model / "fold_0" / "checkpoints" / "final.ckpt"
        if setup == "truncated_checkpoint":
            checkpoint.write_bytes(checkpoint.read_bytes()[:5000])
    if setup == "not_a_model":
        model = tmp_path
    output = tmp_path / "out"
    if setup == "output_under_a_file":
        (tmp_path / "a_file").write_text("")
        output = tmp_path / "a_file" / "out"
    extra = {"bad_checkpoint": ["checkpoint=newest"], "step_size": ["step_size=0"], "precision": ["precision=fp8"],
             "tile_batch": ["tile_batch=0"], "scores_dtype": ["scores_dtype=half"],
             "match_iou": ["evaluation.match_iou=1.5"]}.get(setup, [])
    assert message in _predict_in_process(trained, f"model='{model}'", f"input={images}", f"output={output}", *extra)
    assert not (tmp_path / "out").exists()  # nothing written before the inputs were checked


def _predict_in_process(roots: Roots, *overrides: str) -> str:
    """predict.py's stage in this process (its checks come before anything Hydra-specific); the message."""
    from hydra import compose, initialize_config_dir

    from nnlight.pipeline.predict import parse, run
    from tests.conftest import REPO

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("predict", overrides=[f"paths.results={roots.results}", *overrides])
    with pytest.raises(UserError) as error:
        run(parse(cfg))
    return str(error.value)


def test_a_mistake_ends_predict_py_with_exit_code_2_and_one_line(trained: Roots, tmp_path: Path) -> None:
    model = trained.results / "Dataset900_Demo" / "3d_fullres" / RUN
    shutil.copytree(model / "fold_0", tmp_path / "model" / "fold_0")
    (tmp_path / "model" / "fold_0" / "checkpoints" / "final.ckpt").write_bytes(b"")
    result = run_script("predict.py", f"model='{tmp_path / 'model'}'",
                        f"input={trained.raw / 'Dataset900_Demo' / 'imagesTs'}", f"output={tmp_path / 'out'}",
                        roots=trained)
    assert result.returncode == 2 and "final.ckpt: cannot be read as a checkpoint" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


def test_an_output_folder_never_destroys_inputs_or_other_predictions(trained: Roots, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for f in sorted((trained.raw / "Dataset900_Demo" / "imagesTr").glob("demo_000_*.nii.gz")):
        shutil.copy(f, images / f.name)
    model = trained.results / "Dataset900_Demo" / "3d_fullres" / RUN
    common = [f"model='{model}'", f"input={images}", "mirroring=false", "overwrite=true"]
    for output in (images, images / "predictions"):
        message = _predict_in_process(trained, *common, f"output={output}")
        assert "is the input folder or inside it" in message
    assert sorted(p.name for p in images.iterdir()) == ["demo_000_0000.nii.gz", "demo_000_0001.nii.gz"]

    other = tmp_path / "other"  # another model's predictions (or files predict.py did not write)
    other.mkdir()
    (other / "demo_000.nii.gz").write_bytes(b"someone else's prediction")
    assert "did not write for this model" in _predict_in_process(trained, *common, f"output={other}")
    first = run_script("predict.py", *common, f"output={tmp_path / 'out'}", roots=trained)
    assert first.returncode == 0, first.stderr[-3000:]
    config = (tmp_path / "out" / ".hydra" / "config.yaml").read_text()
    two_d = trained.results / "Dataset900_Demo" / "2d" / RUN
    mixed = _predict_in_process(trained, f"model='{two_d}'", f"input={images}", f"output={tmp_path / 'out'}",
                                "overwrite=true")
    assert "holds predictions of another model" in mixed
    assert (tmp_path / "out" / ".hydra" / "config.yaml").read_text() == config  # how they were made: unchanged
    settings = _predict_in_process(trained, *common[:2], f"output={tmp_path / 'out'}")  # TTA off -> on
    assert "overwrite=true" in settings


def test_evaluating_a_folder_with_missing_cases_says_so(trained: Roots, tmp_path: Path) -> None:
    validation = trained.results / "Dataset900_Demo" / "3d_fullres" / RUN / "fold_0" / "validation"
    shutil.copytree(validation, tmp_path / "pred", ignore=shutil.ignore_patterns("summary.*", "*.npz"))
    scored = len(list((tmp_path / "pred").glob("*.nii.gz")))
    refused = run_script("evaluate.py", "dataset=Dataset900_Demo", f"prediction={tmp_path / 'pred'}", roots=trained)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"of the 5 reference cases in {trained.raw / 'Dataset900_Demo' / 'labelsTr'} have no prediction" in \
        refused.stderr and "allow_missing=true" in refused.stderr
    allowed = run_script("evaluate.py", "dataset=Dataset900_Demo", f"prediction={tmp_path / 'pred'}",
                         "allow_missing=true", roots=trained)
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert f"Scored {scored} case(s) ({5 - scored} reference case(s) without a prediction" in allowed.stdout
    summary = json.loads((tmp_path / "pred" / "summary.json").read_text())
    assert summary["cases"] == scored and summary["references_without_prediction"] == 5 - scored


def test_python_api_on_arrays_equals_the_file_prediction(trained: Roots, tmp_path: Path) -> None:
    from nnlight.inference.predictor import Predictor
    from nnlight.raw.io import image_format, read_images

    model = trained.results / "Dataset900_Demo" / "3d_fullres" / RUN
    files = sorted((trained.raw / "Dataset900_Demo" / "imagesTr").glob("demo_001_*.nii.gz"))
    images, geometry = read_images(files, image_format(".nii.gz"))
    predictor = Predictor.from_model_folder(model, mirroring=False)
    in_memory = predictor.predict(images, geometry.spacing).segmentation  # arrays + spacing, no files
    (tmp_path / "in").mkdir()
    for f in files:
        shutil.copy(f, tmp_path / "in" / f.name)
    result = run_script("predict.py", f"model='{model}'", f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}",
                        "mirroring=false", "postprocessing=false", roots=trained)
    assert result.returncode == 0, result.stderr[-3000:]
    from_files = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "demo_001.nii.gz")))
    assert np.array_equal(in_memory, from_files)
    with pytest.raises(Exception, match="expects"):
        predictor.predict(images[:1], geometry.spacing)
    broken = images.copy()
    broken[1, 2, 3, 4] = np.nan  # NIfTI files cannot carry NaN through ITK, but arrays (and .mha/.nrrd) can
    with pytest.raises(UserError, match="channel 1: contains NaN or Inf voxels"):
        predictor.predict(broken, geometry.spacing)


@pytest.mark.parametrize(("precision", "mirroring"), [("16-mixed", False), ("bf16-mixed", True)])
def test_mixed_precision_prediction_keeps_the_float32_argmax(trained: Roots, precision: str, mirroring: bool) -> None:
    """Autocast really runs (the scores differ from float32) and changes at most 0.1 % of the segmentation.

    bf16 keeps 8 mantissa bits to fp16's 11: without mirroring it changes 0.06-0.13 % of this barely trained
    model's voxels (BENCHMARKS.md), with predict.py's default mirroring under 0.09 %."""
    from nnlight.inference.predictor import Predictor
    from nnlight.raw.io import image_format, read_images

    model = trained.results / "Dataset900_Demo" / "3d_fullres" / RUN
    files = sorted((trained.raw / "Dataset900_Demo" / "imagesTr").glob("demo_001_*.nii.gz"))
    images, geometry = read_images(files, image_format(".nii.gz"))
    exact = Predictor.from_model_folder(model, mirroring=mirroring, device="cpu", precision="32")
    mixed = Predictor.from_model_folder(model, mirroring=mirroring, device="cpu", precision=precision)
    assert exact.inference.precision == "32" and mixed.inference.precision == precision
    case = exact.prepare(images, geometry)
    exact_scores, mixed_scores = exact.scores(case)[0], mixed.scores(case)[0]
    assert not torch.equal(exact_scores, mixed_scores)
    assert torch.allclose(exact_scores, mixed_scores, atol=0.1 * float(exact_scores.abs().max()))
    agreement = np.mean(exact.export(case, (exact_scores, False), False).segmentation
                        == mixed.export(case, (mixed_scores, False), False).segmentation)
    assert agreement >= 0.999


@pytest.mark.slow  # 16 s: two messages; keeps the default suite under 15 minutes on 2 cores
def test_evaluate_and_model_best_before_training_name_the_next_step(demo_3d: Path, roots: Roots) -> None:
    shutil.copytree(demo_3d, roots.raw / demo_3d.name)
    evaluate = run_script("evaluate.py", "dataset=Dataset900_Demo", roots=roots)
    assert evaluate.returncode == 2 and "no complete cross-validation" in evaluate.stderr and \
        "nnlight-train" in evaluate.stderr
    wrong_fold = run_script("evaluate.py", "dataset=Dataset900_Demo", "folds=[0,9]", roots=roots)
    assert wrong_fold.returncode == 2 and "folds=['0', '9']: choose folds among 0..4" in wrong_fold.stderr
    best = run_script("predict.py", "model=best", "dataset=Dataset900_Demo", f"input={roots.raw}",
                      f"output={roots.results / 'out'}", roots=roots)
    assert best.returncode == 2 and "nnlight-evaluate dataset=Dataset900_Demo" in best.stderr
    missing_output = run_script("predict.py", "model=best", "dataset=Dataset900_Demo", f"input={roots.raw}",
                                roots=roots)
    assert missing_output.returncode == 2 and "output=" in missing_output.stderr
    no_folder = run_script("evaluate.py", "dataset=Dataset900_Demo", f"prediction={roots.results / 'nowhere'}",
                           roots=roots)
    assert no_folder.returncode == 2 and "nowhere: folder not found" in no_folder.stderr
    assert "Traceback" not in evaluate.stderr + best.stderr + missing_output.stderr + no_folder.stderr


def _model_cli(*args: str, roots: Roots) -> subprocess.CompletedProcess:
    return run_entry(["-m", "nnlight.exchange.model_cli", *args], cwd=REPO, env=roots.env())


def _segmentations(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in sorted(folder.glob("*.nii.gz"))}


def _cv_expectation(trained: Roots, case: str) -> np.ndarray:
    """What model=best predicts for a validation case: the selected model's (or ensemble's) cross-validation
    prediction, post-processed (``test_model_best_reproduces_the_selected_ensemble`` checks this holds)."""
    results = trained.results / "Dataset900_Demo"
    best = json.loads(_latest(trained).best_configuration.read_text())["selected"]
    cv_folder = next((results / "ensembles").iterdir()) if len(best["members"]) == 2 else \
        results / best["members"][0]["model"] / "crossval"
    cross_validated = sitk.GetArrayFromImage(sitk.ReadImage(str(cv_folder / f"{case}.nii.gz")))
    return apply_postprocessing(cross_validated, PostprocessingRules.load(_latest(trained).postprocessing), [1, 2])


def test_a_model_file_predicts_identically_from_another_results_folder(trained: Roots, tmp_path: Path) -> None:
    cases = _validation_images(trained, tmp_path / "images")
    exported = _model_cli("export", "--dataset", "Dataset900_Demo", "--model", "best", "--output",
                          str(tmp_path / "best.zip"), roots=trained)
    assert exported.returncode == 0, exported.stderr
    elsewhere = Roots(tmp_path / "b" / "raw", tmp_path / "b" / "pre", tmp_path / "b" / "results")  # a fresh machine
    result = run_script("predict.py", f"model={tmp_path / 'best.zip'}", f"input={tmp_path / 'images'}",
                        f"output={tmp_path / 'out'}", "mirroring=false", roots=elsewhere)
    assert result.returncode == 0, result.stderr[-3000:]
    for case in cases:
        predicted = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / f"{case}.nii.gz")))
        assert np.array_equal(predicted, _cv_expectation(trained, case)), case
    installed = _model_cli("install", str(tmp_path / "best.zip"), roots=elsewhere)
    assert installed.returncode == 0, installed.stderr
    installed = load_best(elsewhere.results / "Dataset900_Demo")  # predict.py model=best finds it all
    original = load_best(trained.results / "Dataset900_Demo")
    members, rules = installed.members, installed.postprocessing
    assert [(f.relative_to(elsewhere.results), folds) for f, folds in members] == \
        [(f.relative_to(trained.results), folds) for f, folds in original.members] and \
        rules == original.postprocessing
    assert all((f / f"fold_{k}" / "checkpoints" / "final.ckpt").is_file() for f, folds in members for k in folds)
    again = _model_cli("install", str(tmp_path / "best.zip"), roots=elsewhere)
    assert again.returncode == 2 and "exists already" in again.stderr  # never overwritten


def test_a_model_file_with_an_escaping_entry_is_refused(trained: Roots, tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as archive:
        archive.writestr("nnlight_model.json", json.dumps({
            "format": 1, "dataset": "Dataset900_Demo", "members": [{"model": "3d_fullres/x", "folds": ["0"]}],
            "checkpoint": "final", "postprocessing": None}))
        archive.writestr("3d_fullres/x/../../../escaped.txt", "boo")
    elsewhere = Roots(tmp_path / "raw", tmp_path / "pre", tmp_path / "results")
    result = _model_cli("install", str(tmp_path / "evil.zip"), roots=elsewhere)
    assert result.returncode == 2 and "outside the model's folders" in result.stderr
    assert not (tmp_path / "escaped.txt").exists() and not elsewhere.results.exists()


def test_a_run_exported_to_nnunets_layout_reads_back_as_the_same_model(trained: Roots, tmp_path: Path) -> None:
    from nnlight.exchange.nnunet import export_to_nnunet, load_nnunet_model
    from nnlight.inference.predictor import TrainingChoices
    from nnlight.model.weights import run_network_weights
    from nnlight.utils.folders import ModelFolder

    model = ModelFolder(trained.results / "Dataset900_Demo" / "3d_fullres" / RUN)
    folder = export_to_nnunet(model, tmp_path / "nnUNet_results")
    assert folder == tmp_path / "nnUNet_results" / "Dataset900_Demo" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    imported = load_nnunet_model(folder)
    run = model.fold(0)
    plan = json.loads(run.plan.read_text())
    assert imported.plan == plan  # everything prediction reads from the plan
    choices = TrainingChoices.load(run, plan)
    assert (imported.choices.tile_size, imported.choices.mirror_axes, imported.choices.network) == \
        (choices.tile_size, choices.mirror_axes, choices.network)
    weights = run_network_weights(run, "final")
    assert all(torch.equal(v, weights[k]) for k, v in imported.networks[0].network.state_dict().items())
    assert imported.postprocessing == PostprocessingRules.load(model.postprocessing)  # evaluate.py's choice


def test_each_evaluation_keeps_its_own_comparison_and_model_best_says_which(trained: Roots, tmp_path: Path) -> None:
    """A second comparison never replaces the first; model=best uses the latest unless best=<name>; a dataset
    evaluated before comparisons were named still has its selection found."""
    from nnlight.evaluation.selection import select_best

    results = tmp_path / "Dataset900_Demo"
    shutil.copytree(trained.results / "Dataset900_Demo", results)
    labels, reference = {"background": 0, "a": 1, "b": 2}, trained.raw / "Dataset900_Demo" / "labelsTr"
    first = select_best(results, reference, labels, ".nii.gz", num_workers=0, folds=["0"],
                        models=[f"3d_fullres/{RUN}"], name="only_3d")
    second = select_best(results, reference, labels, ".nii.gz", num_workers=0, folds=["0"],
                         models=[f"2d/{RUN}"], ensembles=False)
    kept = DatasetResults(results)
    assert first["comparison"] == "only_3d" and kept.comparison("only_3d").cv_table.is_file()
    assert json.loads(kept.comparison("only_3d").best_configuration.read_text()) == json.loads(
        json.dumps(first))  # untouched by the second
    assert second["comparison"].startswith("folds0_1models_") and kept.latest() == kept.comparison(
        second["comparison"])
    assert [f.parent.name for f, _ in load_best(results).members] == ["2d"]
    assert [f.parent.name for f, _ in load_best(results, "only_3d").members] == ["3d_fullres"]
    with pytest.raises(UserError, match="comparisons of Dataset900_Demo: folds0_1models_"):
        load_best(results, "no_such_comparison")

    legacy = tmp_path / "legacy" / "Dataset900_Demo"  # written by an nnlight before named comparisons
    shutil.copytree(results, legacy)
    shutil.rmtree(legacy / "comparisons")
    moved = json.loads(kept.comparison("only_3d").best_configuration.read_text())
    shutil.copy(kept.comparison("only_3d").postprocessing, legacy / "postprocessing.json")
    moved["selected"]["postprocessing"] = "postprocessing.json"
    (legacy / "best_configuration.json").write_text(json.dumps(moved))
    old = load_best(legacy)
    assert [f.parent.name for f, _ in old.members] == ["3d_fullres"] and old.comparison == ""


def test_model_selection_counts_only_intact_complete_cross_validations(trained: Roots, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """A fold whose checkpoint is gone, a truncated validation file, a search trial and an incomplete
    cross-validation never take part; each is named with why (and the truncated file by its own path)."""
    from nnlight.evaluation.selection import select_best

    results = tmp_path / "Dataset900_Demo"
    shutil.copytree(trained.results / "Dataset900_Demo", results)
    shutil.rmtree(results / "ensembles")
    labels = {"background": 0, "a": 1, "b": 2}
    reference = trained.raw / "Dataset900_Demo" / "labelsTr"

    def select(**kwargs: object) -> dict:
        return select_best(results, reference, labels, ".nii.gz", num_workers=0, **{"folds": ["0"], **kwargs})

    two_d, three_d = results / "2d" / RUN, results / "3d_fullres" / RUN
    (two_d / "fold_0" / "checkpoints" / "final.ckpt").unlink()
    chosen = select()
    assert [m["model"] for m in chosen["selected"]["members"]] == [f"3d_fullres/{RUN}"]
    assert "final.ckpt is missing" in chosen["left_out"][f"2d/{RUN}"] and list(chosen["candidates"]) == [
        f"3d_fullres/{RUN}"]
    assert "final.ckpt is missing" in DatasetResults(results).comparison(chosen["comparison"]).cv_table.read_text()

    # a search trial is left out unless named
    record = three_d / "fold_0" / "run_config.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "search": "lr_weight_decay"}))
    with pytest.raises(UserError, match="no complete cross-validation over folds 0"):
        select()
    assert "a trial of the search hparams_search=lr_weight_decay" in capsys.readouterr().out
    assert list(select(models=[f"3d_fullres/{RUN}"])["candidates"]) == [f"3d_fullres/{RUN}"]

    # all five folds by default: one trained fold is an incomplete cross-validation
    with pytest.raises(UserError, match="no complete cross-validation") as refused:
        select(folds=None)
    assert "folds=0" in str(refused.value)
    assert "fold 1, 2, 3, 4 not trained" in capsys.readouterr().out

    # a truncated validation prediction is named by its own path; no copy of it is made
    case = json.loads((three_d / "fold_0" / "validation" / "summary.json").read_text())["metric_per_case"][0]["case"]
    broken = three_d / "fold_0" / "validation" / f"{case}.nii.gz"
    broken.write_bytes(broken.read_bytes()[:40])
    shutil.rmtree(three_d / "crossval")
    with pytest.raises(UserError):
        select(models=[f"3d_fullres/{RUN}"])
    assert f"{broken} is missing, empty or truncated" in capsys.readouterr().out
    assert not (three_d / "crossval").exists()


def test_prediction_onto_a_full_disk_fails_clearly_and_a_rerun_finishes(trained: Roots, tmp_path: Path) -> None:
    """Nothing cut short is kept or later skipped as done: the run stops with one line naming the file, and the
    rerun (after space was freed) predicts what is missing; a file truncated by hand is predicted again."""
    cases = _validation_images(trained, tmp_path / "images")
    (tmp_path / "more").mkdir()
    for i in range(3):  # a few more cases, so the disk fills part-way through the folder
        for f in (tmp_path / "images").glob("*.nii.gz"):
            shutil.copy(f, tmp_path / "more" / f.name.replace("_0", f"x{i}_0"))
    model = f"model='{trained.results / 'Dataset900_Demo' / '3d_fullres' / RUN}'"
    with small_disk(tmp_path / "disk", "64k") as resize:
        output = tmp_path / "disk" / "out"
        if resize is not None:  # leave three pages free: the run's records fit, the segmentations do not
            free = shutil.disk_usage(tmp_path / "disk").free
            (tmp_path / "disk" / "filler").write_bytes(bytes(free - 3 * 4096))
        args = [model, f"input={tmp_path / 'more'}", f"output={output}", "mirroring=false"]
        full = run_script("predict.py", *args, roots=trained,
                          preexec_fn=None if resize is not None else file_size_limit(700))
        assert full.returncode == 2 and "Traceback" not in full.stderr and "Predicted" not in full.stdout
        assert "could not be written" in full.stderr
        if resize is not None:
            assert "no space left on the device" in full.stderr
            resize("16m")
        written = list(output.glob("*.nii.gz"))
        assert all(written_completely(p) for p in written) and not list(output.glob(".*.tmp*"))
        again = run_script("predict.py", *args, roots=trained)
        assert again.returncode == 0, again.stderr[-2000:]
        outputs = sorted(output.glob("*.nii.gz"))
        assert len(outputs) == 3 * len(cases) and all(written_completely(p) for p in outputs)
        outputs[0].write_bytes(outputs[0].read_bytes()[:40])  # a file cut short (by a crash, a copy, a full disk)
        third = run_script("predict.py", *args, roots=trained)
        assert third.returncode == 0 and "incomplete" in third.stdout and written_completely(outputs[0])


def test_the_readmes_python_examples_run_as_saved_scripts(trained: Roots, tmp_path: Path) -> None:
    """Each ``python`` block of the README's Python sections, saved as a script and run where the demo ran (the
    README's data/ layout); without its __main__ guard the worker-starting example is refused with the fix."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```python\n")[1:]]
    assert len(blocks) >= 2
    (tmp_path / "data").mkdir()
    for name in ("raw", "results"):
        (tmp_path / "data" / name).symlink_to(getattr(trained, name))
    first_image = sorted((trained.raw / "Dataset900_Demo" / "imagesTs").glob("*_0000.nii.gz"))[0]
    test_case = first_image.name.removesuffix("_0000.nii.gz")
    pytest.importorskip("onnxruntime", reason="the README's ONNX example needs the onnx extra")
    from nnlight.exchange.model_cli import main as model_cli

    model_cli(["export", "--format", "onnx", "--dataset", "Dataset900_Demo", "--model", f"3d_fullres/{RUN}",
               "--output", str(tmp_path / "demo_onnx"), "--results", str(trained.results)])
    for i, block in enumerate(blocks):
        script = tmp_path / f"example_{i}.py"
        script.write_text(block.replace("demo_008", test_case))
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"README example {i}:\n{block}\n{done.stderr[-2000:]}"
    assert written_completely(tmp_path / f"{test_case}.nii.gz")  # the Predictor example's segmentation
    by_nnlight = run_script("predict.py", f"model={tmp_path / 'demo_onnx'}", f"input={first_image.parent}",
                            f"output={tmp_path / 'by_nnlight'}", "mirroring=false", "postprocessing=false",
                            roots=trained)
    assert by_nnlight.returncode == 0, by_nnlight.stderr[-2000:]
    onnx_alone = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"{test_case}_onnx.nii.gz")))
    nnlight = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "by_nnlight" / f"{test_case}.nii.gz")))
    assert np.array_equal(onnx_alone, nnlight)  # the README's ~40 lines without nnlight: the same segmentation
    guarded = next(b for b in blocks if 'if __name__ == "__main__":' in b)
    unguarded = "\n".join(line.removeprefix("    ") for line in guarded.splitlines() if "__main__" not in line)
    (tmp_path / "unguarded.py").write_text(unguarded)
    refused = subprocess.run([sys.executable, "unguarded.py"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=600)
    assert refused.returncode != 0 and 'put the script\'s code under  if __name__ == "__main__":' in refused.stderr
    assert "out of memory" not in refused.stderr


def test_every_logger_gets_the_whole_recipe_and_the_final_validation_dice(trained: Roots) -> None:
    import yaml

    run = trained.results / "Dataset900_Demo" / "3d_fullres" / RUN / "fold_0"
    hparams = yaml.safe_load((run / "logs" / "hparams.yaml").read_text())
    assert hparams["optimizer"]["lr"] == 0.01 and hparams["optimizer"]["weight_decay"] == 3e-5
    assert hparams["scheduler"]["_target_"] == "nnlight.training.schedules.PolyLR"
    assert hparams["trainer"]["max_epochs"] == 2 and hparams["loss"]["name"] == "dice_ce"
    rows = [r for r in csv.DictReader((run / "logs" / "metrics.csv").open()) if r.get("validation/dice")]
    dice = json.loads((run / "validation" / "summary.json").read_text())["foreground_mean"]["Dice"]
    assert len(rows) == 1 and float(rows[0]["validation/dice"]) == pytest.approx(dice)



def test_a_failing_image_is_recorded_and_the_others_are_predicted(trained: Roots, tmp_path: Path) -> None:
    """With reading and export in threads and images sharing forward passes (the queues of a GPU run)."""
    images = tmp_path / "images"
    images.mkdir()
    source = trained.raw / "Dataset900_Demo" / "imagesTr"
    for case in ("demo_000", "demo_001", "demo_002"):
        for channel in (0, 1):
            shutil.copy(source / f"{case}_{channel:04d}.nii.gz", images / f"{case}_{channel:04d}.nii.gz")
    good = (images / "demo_001_0000.nii.gz").read_bytes()
    (images / "demo_001_0000.nii.gz").write_bytes(good[: len(good) // 2])  # unreadable
    (images / "demo_002_0001.nii.gz").rename(tmp_path / "demo_002_0001.nii.gz")  # a channel missing
    args = [f"model='{trained.results / 'Dataset900_Demo' / '3d_fullres' / RUN}'", f"input={images}",
            f"output={tmp_path / 'out'}", "mirroring=false", "workers=2", "tile_batch=8"]
    first = run_script("predict.py", *args, roots=trained)
    assert first.returncode == 2 and "Traceback" not in first.stderr
    assert "2 of 3 image(s) failed" in first.stderr and "failed.json" in first.stderr
    failed = json.loads((tmp_path / "out" / "failed.json").read_text())["failed"]
    assert set(failed) == {"demo_001", "demo_002"}
    assert "truncated or corrupt" in failed["demo_001"] and "missing channel" in failed["demo_002"]
    assert (tmp_path / "out" / "demo_000.nii.gz").is_file() and "Predicted 1 case(s)" in first.stdout

    (images / "demo_001_0000.nii.gz").write_bytes(good)  # fixed: a rerun predicts only these
    (tmp_path / "demo_002_0001.nii.gz").rename(images / "demo_002_0001.nii.gz")
    again = run_script("predict.py", *args, roots=trained)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Predicted 2 case(s)" in again.stdout and "1 already done, skipped" in again.stdout
    assert not (tmp_path / "out" / "failed.json").exists()


def test_images_sharing_forward_passes_and_threads_give_the_same_files(trained: Roots, tmp_path: Path) -> None:
    """A folder predicted with several images per forward pass and reading/export in threads holds the files that
    one image at a time in one thread writes (the network's sums may differ in the last bits between batch sizes:
    the scores agree to float32 rounding)."""
    from nnlight.inference.folder import input_cases, predict_folder

    model = trained.results / "Dataset900_Demo" / "3d_fullres" / RUN
    (tmp_path / "images").mkdir()
    for f in sorted((trained.raw / "Dataset900_Demo" / "imagesTr").glob("demo_00[0-3]_*.nii.gz")):
        shutil.copy(f, tmp_path / "images" / f.name)
    cases, failed = input_cases(tmp_path / "images", ".nii.gz", 2)
    assert len(cases) == 4 and not failed
    outputs = {}
    for tile_batch, workers in ((1, 0), (16, 2)):
        predictor = Predictor.from_model_folder(model, mirroring=False, device="cpu", tile_batch=tile_batch)
        tiles = [predictor.tiles(predictor.prepare(*read_images(files, image_format(".nii.gz"))))
                 for files in cases.values()]
        assert sum(tiles) <= 16  # so the batched run predicts every image in one pass
        outputs[workers] = tmp_path / f"out_{workers}"
        report = predict_folder(predictor, cases, outputs[workers], ".nii.gz", save_probabilities=True,
                                workers=workers)
        assert sorted(report.predicted) == sorted(cases)
    for case in cases:
        one, batched = (sitk.GetArrayFromImage(sitk.ReadImage(str(o / f"{case}.nii.gz"))) for o in outputs.values())
        assert (one == batched).mean() >= 0.9999
        one, batched = (np.load(o / f"{case}.npz")["probabilities"].astype(np.float32) for o in outputs.values())
        assert np.abs(one - batched).max() < 2e-3  # float16 files


def test_an_onnx_export_predicts_the_pytorch_models_segmentation(trained: Roots, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="ONNX needs the onnx extra (pip install 'nnlight[onnx]')")
    from nnlight.exchange.model_cli import main as model_cli
    from nnlight.exchange.onnx_model import onnx_model

    model = trained.results / "Dataset900_Demo" / "3d_fullres" / RUN
    model_cli(["export", "--format", "onnx", "--dataset", "Dataset900_Demo", "--model", f"3d_fullres/{RUN}",
               "--output", str(tmp_path / "onnx"), "--results", str(trained.results)])
    spec = json.loads((tmp_path / "onnx" / "spec.json").read_text())
    assert spec["networks"] == ["fold_0.onnx"] and spec["plan"]["normalization_schemes"]
    assert spec["inference"]["tile_size"] and "foreground_intensity_properties_per_channel" in spec["plan"]
    by_torch, (by_onnx, _) = Predictor.from_model_folder(model, device="cpu"), onnx_model(tmp_path / "onnx")
    same = total = 0
    for case in _validation_images(trained, tmp_path / "images"):  # mirroring on, as predict.py by default
        images, geometry = read_images(sorted((tmp_path / "images").glob(f"{case}_*.nii.gz")), image_format(".nii.gz"))
        expected, got = (p.predict(images, geometry).segmentation for p in (by_torch, by_onnx))
        same, total = same + int((expected == got).sum()), total + expected.size
    print(f"ONNX vs PyTorch: {same} of {total} voxels agree ({same / total:.6%})")
    assert same / total >= 0.9999, f"{same / total:.6f} of the voxels agree"


def test_precision_given_as_a_number_is_accepted() -> None:
    """``precision=32`` on the command line reaches the options as an int; it means float32, not a type error."""
    from omegaconf import OmegaConf

    from nnlight.inference.predictor import canonical_precision
    from nnlight.pipeline.config_values import plain, typed
    from nnlight.pipeline.predict import PredictOptions

    for value, meant in ((32, "32"), (16, "16-mixed"), ("bf16", "bf16-mixed"), ("auto", "auto")):
        options = typed(PredictOptions, plain(OmegaConf.create({"precision": value})), "predict")
        assert options.precision == "auto" if value == "auto" else canonical_precision(options.precision) == meant
    with pytest.raises(UserError, match="precision=8: choose auto, 32, 16-mixed, bf16-mixed"):
        typed(PredictOptions, plain(OmegaConf.create({"precision": 8})), "predict")


def test_a_run_folder_naming_a_downloading_network_fetches_nothing(tmp_path: Path) -> None:
    """The issue's attack: a run folder whose inference.json names MONAI's HoVerNet with pretrained_url=file://...
    made nnlight-predict write ~/.cache/torch/hub. Refused now with one line; nothing under the home folder."""
    from tests.exchange.test_model_zip import PLAN, _checkpoint

    run = tmp_path / "results" / "Dataset900_Demo" / "3d_fullres" / "baseline" / "fold_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "final.ckpt").write_bytes(_checkpoint())
    (run / "plan.json").write_text(json.dumps(PLAN))
    (run / "dataset.json").write_text(json.dumps({"labels": PLAN["labels"]}))
    for target, trusted in (("monai.networks.nets.HoVerNet", []), ("monai.networks.nets.HoVerNet", ["monai"])):
        (run / "inference.json").write_text(json.dumps({"tile_size": [16, 16], "mirror_axes": [], "network": {
            "target": target, "arguments": {"pretrained_url": "file:///etc/passwd"}}}))
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        (tmp_path / "in").mkdir(exist_ok=True)
        env = {**os.environ, "HOME": str(home), "TORCH_HOME": str(home / ".cache" / "torch")}
        result = run_entry([str(REPO / "predict.py"), f"model={run}", f"input={tmp_path / 'in'}",
                            f"output={tmp_path / 'out'}", f"trusted_networks={trusted}".replace("'", "")],
                           cwd=tmp_path, env=env)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert ("not one of the networks nnlight builds from a file" if not trusted else
                "network argument pretrained_url='file:///etc/passwd' names a URL or a path") in result.stderr
        written = [p for p in home.rglob("*") if p.is_file() and "matplotlib" not in p.parts]  # its font cache
        assert written == [] and not (tmp_path / "out").exists()


def _cohort(trained: Roots, folder: Path) -> list[str]:
    """Every image of the demo (training and test) in ``folder``; their case names."""
    folder.mkdir()
    for f in sorted((trained.raw / "Dataset900_Demo").glob("images*/demo_*.nii.gz")):
        shutil.copy(f, folder / f.name)
    return sorted({f.name[:-len("_0000.nii.gz")] for f in folder.iterdir()})


def _same_files(one: Path, other: Path, cases: list[str]) -> None:
    names = sorted(p.name for p in one.glob("*.nii.gz"))
    assert names == sorted(p.name for p in other.glob("*.nii.gz")) == [f"{c}.nii.gz" for c in cases]
    for name in names:
        a, b = (sitk.ReadImage(str(folder / name)) for folder in (one, other))
        assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b)), name
        assert (a.GetSpacing(), a.GetOrigin(), a.GetDirection()) == (b.GetSpacing(), b.GetOrigin(), b.GetDirection())


def test_a_cohort_predicted_in_shards_equals_one_run_with_one_failed_json(trained: Roots, tmp_path: Path) -> None:
    """Two jobs (shard=0 and shard=1 of 2) into one folder write the files one run writes; each shard's broken
    image is in the one failed.json, which the other shard's write keeps; a rerun of a shard predicts nothing
    again."""
    from nnlight.utils.shards import Shard

    images = tmp_path / "images"
    cases = _cohort(trained, images)
    parts = {k: [c for c in cases if Shard(k, 2).contains(c)] for k in (0, 1)}
    assert all(len(part) >= 2 for part in parts.values()), parts  # each shard has an image left to predict
    broken = {k: part[0] for k, part in parts.items()}
    for case in broken.values():
        (images / f"{case}_0001.nii.gz").rename(tmp_path / f"{case}_0001.nii.gz")  # a channel missing
    model = f"model='{trained.results / 'Dataset900_Demo' / '2d' / RUN}'"
    common = [model, f"input={images}", "mirroring=false"]
    single = run_script("predict.py", *common, f"output={tmp_path / 'one'}", roots=trained)
    assert single.returncode == 2 and f"2 of {len(cases)} image(s) failed" in single.stderr
    for k in (0, 1):
        shard = run_script("predict.py", *common, f"output={tmp_path / 'shards'}", f"shard={k}", "shards=2",
                           roots=trained)
        assert shard.returncode == 2 and "1 of" in shard.stderr and "Traceback" not in shard.stderr
        assert f"shard {k} of 2" in shard.stdout
    failed = json.loads((tmp_path / "shards" / "failed.json").read_text())
    assert set(failed["failed"]) == set(broken.values()) and failed["cases"] == len(cases)
    assert failed == json.loads((tmp_path / "one" / "failed.json").read_text())
    for case in broken.values():  # fixed: each shard predicts its own, and failed.json is gone after both
        (tmp_path / f"{case}_0001.nii.gz").rename(images / f"{case}_0001.nii.gz")
    for k in (0, 1):
        shard = run_script("predict.py", *common, f"output={tmp_path / 'shards'}", f"shard={k}", "shards=2",
                           roots=trained)
        assert shard.returncode == 0 and "Predicted 1 case(s)" in shard.stdout, shard.stderr[-2000:]
    assert not (tmp_path / "shards" / "failed.json").exists()
    again = run_script("predict.py", *common, f"output={tmp_path / 'one'}", roots=trained)
    assert again.returncode == 0 and "Predicted 2 case(s)" in again.stdout
    _same_files(tmp_path / "one", tmp_path / "shards", cases)


@pytest.mark.slow  # 30 s: two launcher jobs
def test_a_cohort_predicted_by_a_launcher_sweep_over_shards_equals_one_run(trained: Roots, tmp_path: Path) -> None:
    """-m shard=0,1 shards=2 through submitit's local executor (the SLURM launcher's code path)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install 'nnlight[slurm]'")
    images = tmp_path / "images"
    cases = _cohort(trained, images)
    common = [f"model='{trained.results / 'Dataset900_Demo' / '2d' / RUN}'", f"input={images}", "mirroring=false"]
    single = run_script("predict.py", *common, f"output={tmp_path / 'one'}", roots=trained)
    assert single.returncode == 0, single.stderr[-3000:]
    sweep = run_script("predict.py", "-m", "launcher=submitit_local", "shard=0,1", "shards=2", *common,
                       f"output={tmp_path / 'shards'}", roots=trained)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    _same_files(tmp_path / "one", tmp_path / "shards", cases)
    assert not (tmp_path / "shards" / "failed.json").exists()
