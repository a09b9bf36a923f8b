"""The cascade end to end: a dataset big enough (for a small GPU-memory target) that nnU-Net plans 3d_lowres."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnlight.evaluation.selection import load_best
from nnlight.raw.synthetic import make_synthetic_dataset
from tests.conftest import Roots, run_script
from tests.planning.test_planner_vs_nnunet import _comparable

pytestmark = pytest.mark.cli

PLANNER = "planner.gpu_memory_target_gb=0.02"  # with images of 32x64x64: nnU-Net plans 3d_lowres + cascade
BUDGET = ["trainer.max_epochs=1", "data.iterations_per_epoch=2", "data.val_iterations_per_epoch=1",
          "data.num_workers=0", "validation.mirroring=false"]
NAME = "baseline+data.iterations_per_epoch-2+data.val_iterations_per_epoch-1+trainer.max_epochs-1"
REFERENCE = Path(__file__).resolve().parents[1] / "planning" / "data" / "nnunet_2.8.1_cascade_synthetic.json"


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Roots:
    base = tmp_path_factory.mktemp("cascade")
    roots = Roots(base / "raw", base / "preprocessed", base / "results")
    make_synthetic_dataset(roots.raw, 905, "Cascade", num_cases=5, shape=(32, 64, 64))
    result = run_script("plan.py", "dataset=905", "num_workers=0", PLANNER, roots=roots)
    assert result.returncode == 0, result.stderr[-3000:]
    cases = [f"cascade_{i:03d}" for i in range(5)]  # two folds keep the low-res cross-validation short
    (roots.preprocessed / "Dataset905_Cascade" / "splits_final.json").write_text(json.dumps(
        [{"train": cases[:3], "val": cases[3:]}, {"train": cases[3:], "val": cases[:3]}]))
    return roots


def test_the_plans_equal_nnunets_with_lowres_and_cascade(planned: Roots) -> None:
    ours = _comparable(json.loads((planned.preprocessed / "Dataset905_Cascade" / "nnUNetPlans.json").read_text()))
    assert set(ours["configurations"]) == {"2d", "3d_lowres", "3d_fullres", "3d_cascade_fullres"}
    assert ours == json.loads(REFERENCE.read_text())["plans"]


def test_the_cascade_without_low_res_predictions_names_the_folds_to_train(planned: Roots) -> None:
    result = run_script("train.py", "plan=Dataset905_Cascade/3d_cascade_fullres", *BUDGET, roots=planned)
    assert result.returncode == 2
    assert "low-res predictions of 5 case(s) are missing" in result.stderr
    assert "nnlight-train plan=Dataset905_Cascade/3d_lowres data.fold=0,1 -m" in result.stderr
    assert not (planned.results / "Dataset905_Cascade" / "3d_cascade_fullres").exists()


@pytest.mark.slow  # ~3 min: two low-res folds, the cascade, evaluation, prediction
def test_cascade_trains_predicts_and_is_a_candidate(planned: Roots, tmp_path: Path) -> None:
    lowres = run_script("train.py", "-m", "plan=Dataset905_Cascade/3d_lowres", "data.fold=0,1", *BUDGET,
                        roots=planned)
    assert lowres.returncode == 0, lowres.stderr[-3000:]
    results = planned.results / "Dataset905_Cascade"
    next_stage = results / "3d_lowres" / NAME / "predicted_next_stage"
    fullres_store = planned.preprocessed / "Dataset905_Cascade" / "nnUNetPlans_3d_fullres"
    for case in (f"cascade_{i:03d}" for i in range(5)):  # on the cascade's grid
        grid = np.load(fullres_store / f"{case}.npy", mmap_mode="r").shape[1:]
        assert np.load(next_stage / f"{case}.npy").shape == (1, *grid)
    cascade = run_script("train.py", "plan=Dataset905_Cascade/3d_cascade_fullres", *BUDGET, roots=planned)
    assert cascade.returncode == 0, cascade.stderr[-3000:]
    inference = json.loads((results / "3d_cascade_fullres" / NAME / "fold_0" / "inference.json").read_text())
    assert inference["previous_stage"] == f"3d_lowres/{NAME}"
    evaluated = run_script("evaluate.py", "dataset=Dataset905_Cascade", "folds=[0]", roots=planned)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    candidates = json.loads(load_best(results).source.read_text())["candidates"]
    assert f"3d_cascade_fullres/{NAME}" in candidates
    images = planned.raw / "Dataset905_Cascade" / "imagesTs"
    predicted = run_script("predict.py", f"model='{results / '3d_cascade_fullres' / NAME}'", f"input={images}",
                           f"output={tmp_path / 'out'}", "mirroring=false", "postprocessing=false", roots=planned)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    for image in sorted(images.glob("*_0000.nii.gz")):
        out = sitk.ReadImage(str(tmp_path / "out" / image.name.replace("_0000", "")))
        assert out.GetSize() == sitk.ReadImage(str(image)).GetSize()
