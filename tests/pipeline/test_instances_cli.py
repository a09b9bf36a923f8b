"""Instance datasets through the real entry points: plan → train → evaluate → predict writes instance maps in the
input's geometry and scores them object by object; wrong instance input is refused before anything is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from omegaconf import OmegaConf

from nnlight.evaluation.selection import load_best
from nnlight.exchange.model_zip import export_model_zip
from nnlight.exchange.nnunet import export_to_nnunet
from nnlight.fingerprint import compute_fingerprint
from nnlight.inference.predictor import Predictor
from nnlight.planning import PlannerSettings, plan_experiment
from nnlight.preprocessing.preprocess import preprocess_dataset
from nnlight.raw.dataset import require_raw_dataset
from nnlight.raw.instances import InstancePlan, instances_from_border_core
from nnlight.raw.io import image_format, read_images
from nnlight.raw.synthetic import make_instance_dataset
from nnlight.utils.errors import UserError
from nnlight.utils.folders import ModelFolder
from tests.conftest import TINY_BUDGET, Roots, run_script
from tests.pipeline.test_plan_errors import _edit_json, _plan_in_process

pytestmark = pytest.mark.cli

DATASET = "Dataset912_Cells3D"


@pytest.fixture(scope="module")
def cells_3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Anisotropic 3D cells (3 mm slices, 1 mm in-plane), many touching, with instance maps."""
    return make_instance_dataset(tmp_path_factory.mktemp("cells"), 912, "Cells3D", num_cases=5, shape=(10, 40, 40),
                                 spacing=(3.0, 1.0, 1.0), cells=10, radius_mm=6.0, num_test_cases=2)


@pytest.mark.slow  # 50-90 s on a 2-core Xeon: the default suite keeps its 15 minutes
def test_an_instance_dataset_runs_plan_train_evaluate_predict(cells_3d: Path, roots: Roots) -> None:
    shutil.copytree(cells_3d, roots.raw / DATASET)
    plan = run_script("plan.py", f"dataset={DATASET}", "num_workers=0", roots=roots)
    assert plan.returncode == 0, plan.stderr
    assert "learnt as border-core: border" in plan.stdout
    fingerprint = json.loads((roots.preprocessed / DATASET / "fingerprint.json").read_text())
    assert fingerprint["instances"]["dims"] == 3 and fingerprint["instances"]["objects"] >= 30
    config = (roots.preprocessed / "configs" / "plan" / DATASET / "3d_fullres.yaml").read_text()
    assert "instances:" in config and "cell_border: 2" in config
    seg = np.load(next((roots.preprocessed / DATASET / "nnUNetPlans_3d_fullres").glob("*_seg.npy")))
    assert set(np.unique(seg)) <= {-1, 0, 1, 2} and (seg == 2).any() and (seg == 1).any()  # border-core, not ids

    train = run_script("train.py", f"plan={DATASET}/3d_fullres", *TINY_BUDGET, "validation.mirroring=false",
                       roots=roots)
    assert train.returncode == 0, train.stderr
    assert "objects: SEG" in train.stdout
    other_ring = run_script("train.py", f"plan={DATASET}/3d_fullres", "plan.instances.border_thickness_mm=4",
                            *TINY_BUDGET, roots=roots)  # the stored labels were made with the plan's ring
    assert other_ring.returncode == 2 and "were made with" in other_ring.stderr, other_ring.stderr

    evaluate = run_script("evaluate.py", f"dataset={DATASET}", "folds=0", "selection_metric=SEG", roots=roots)
    assert evaluate.returncode == 0, evaluate.stderr
    assert "(by SEG)" in evaluate.stdout and "| SEG |" in evaluate.stdout
    best = json.loads(load_best(roots.results / DATASET).source.read_text())["selected"]
    assert best["selection_metric"] == "SEG" and best["postprocessing_rules"] == "none"

    images, labels, output = roots.raw / DATASET / "imagesTs", roots.raw / DATASET / "labelsTs", roots.results / "out"
    predict = run_script("predict.py", "model=best", f"dataset={DATASET}", f"input={images}", f"output={output}",
                         f"reference={labels}", roots=roots)
    assert predict.returncode == 0, predict.stderr
    assert "SEG" in predict.stdout
    summary = json.loads((output / "summary.json").read_text())
    assert {"SEG", "F1", "AP50", "PQ", "ARE", "VI", "Dice"} <= set(summary["foreground_mean"])

    no_objects = run_script("predict.py", "model=best", f"dataset={DATASET}", f"input={images}",
                            f"output={roots.results / 'refused'}", "output_instances=false", f"reference={labels}",
                            roots=roots)  # border-core labels have no reference to be scored against
    assert no_objects.returncode == 2 and "leave output_instances=true" in no_objects.stderr
    assert not (roots.results / "refused").exists()
    semantic = roots.results / "border_core"
    run = run_script("predict.py", "model=best", f"dataset={DATASET}", f"input={images}", f"output={semantic}",
                     "output_instances=false", roots=roots)
    assert run.returncode == 0, run.stderr
    plan_file = roots.preprocessed / "configs" / "plan" / DATASET / "3d_fullres.yaml"
    plan = InstancePlan.from_mapping(OmegaConf.to_container(OmegaConf.load(plan_file))["instances"])
    for label_file in sorted(labels.glob("*.nii.gz")):
        image = sitk.ReadImage(str(images / label_file.name.replace(".nii.gz", "_0000.nii.gz")))
        prediction = sitk.ReadImage(str(output / label_file.name))
        assert prediction.GetSize() == image.GetSize() and prediction.GetSpacing() == image.GetSpacing()
        assert prediction.GetOrigin() == image.GetOrigin() and prediction.GetDirection() == image.GetDirection()
        border_core_labels = sitk.GetArrayFromImage(sitk.ReadImage(str(semantic / label_file.name)))
        assert set(np.unique(border_core_labels).tolist()) <= {0, 1, 2}
        # the instance map is the border-core prediction turned into objects on the input's own spacing
        expected = instances_from_border_core(border_core_labels, image.GetSpacing()[::-1], plan)
        assert np.array_equal(sitk.GetArrayFromImage(prediction), expected)

    # the same objects from a model file and from the Python API
    model_file = roots.results / "cells.zip"
    export_model_zip(roots.results, DATASET, "best", model_file)
    from_file = roots.results / "from_file"
    assert run_script("predict.py", f"model={model_file}", f"input={images}", f"output={from_file}",
                      roots=roots).returncode == 0
    model_folder = roots.results / DATASET / best["members"][0]["model"]
    with pytest.raises(UserError, match="nnU-Net has no instance maps"):
        export_to_nnunet(ModelFolder(model_folder), roots.results / "nnunet")
    predictor = Predictor.from_model_folder(model_folder, device="cpu")
    for label_file in sorted(labels.glob("*.nii.gz")):
        assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(from_file / label_file.name))),
                              sitk.GetArrayFromImage(sitk.ReadImage(str(output / label_file.name))))
        case_images, geometry = read_images([images / label_file.name.replace(".nii.gz", "_0000.nii.gz")],
                                            image_format(".nii.gz"))
        assert np.array_equal(predictor.predict(case_images, geometry).segmentation,
                              sitk.GetArrayFromImage(sitk.ReadImage(str(output / label_file.name))))


def test_a_new_border_ring_preprocesses_the_labels_again(cells_3d: Path, tmp_path: Path) -> None:
    dataset = require_raw_dataset(cells_3d)
    fingerprint = compute_fingerprint(dataset, 0)
    store = tmp_path / dataset.name / "nnUNetPlans_3d_fullres"

    def preprocess(settings: PlannerSettings) -> list[int]:
        plans = plan_experiment(fingerprint, dataset.dataset_json, settings, dataset.name)
        return [r.done for r in preprocess_dataset(dataset, plans, tmp_path, 0, ["3d_fullres"])]

    assert preprocess(PlannerSettings()) == [5]
    before = np.load(store / "cells3d_000_seg.npy")
    assert preprocess(PlannerSettings()) == [0]  # the same ring: nothing to redo
    assert preprocess(PlannerSettings(border_thickness_mm=3.5)) == [5]  # labels made with another ring: redone
    assert (np.load(store / "cells3d_000_seg.npy") == 2).sum() > (before == 2).sum()  # a thicker ring


def _float_ids(folder: Path) -> str:
    path = folder / "labelsTr" / "cells3d_001.nii.gz"
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    array[array == 2] = 2.5
    float_image = sitk.GetImageFromArray(array)
    float_image.CopyInformation(image)
    sitk.WriteImage(float_image, str(path))
    return "cells3d_001.nii.gz: object ids are not integers"


def _a_semantic_map_among_instance_maps(folder: Path) -> str:
    path = folder / "labelsTr" / "cells3d_002.nii.gz"
    image = sitk.ReadImage(str(path))
    mask = sitk.GetImageFromArray((sitk.GetArrayFromImage(image) > 0).astype(np.uint8))
    mask.CopyInformation(image)
    sitk.WriteImage(mask, str(path))
    return "cells3d_002.nii.gz: looks like a semantic map"


def _overlapping_declared_labels(folder: Path) -> str:
    _edit_json(folder, lambda d: d.update(labels={"background": 0, "cell": [1, 2], "nucleus": [2]},
                                          regions_class_order=[1, 2]))
    return "region labels"


@pytest.mark.parametrize("break_dataset", [_float_ids, _a_semantic_map_among_instance_maps,
                                           _overlapping_declared_labels], ids=lambda f: f.__name__.strip("_"))
def test_wrong_instance_input_is_one_clear_line_and_nothing_is_written(break_dataset, cells_3d: Path,
                                                                       roots: Roots) -> None:
    folder = shutil.copytree(cells_3d, roots.raw / DATASET)
    expected = break_dataset(folder)
    message = _plan_in_process(DATASET, roots)
    assert expected in message and len([line for line in message.splitlines() if expected in line]) == 1
    assert roots.files_under_outputs() == []


def test_a_wrong_instance_map_ends_plan_py_with_exit_code_2(cells_3d: Path, roots: Roots) -> None:
    folder = shutil.copytree(cells_3d, roots.raw / DATASET)
    expected = _float_ids(folder)
    result = run_script("plan.py", f"dataset={DATASET}", "num_workers=0", roots=roots)
    assert result.returncode == 2 and expected in result.stderr and "Traceback" not in result.stderr
    assert roots.files_under_outputs() == []


def test_an_object_score_selects_only_on_an_instance_dataset(cells_3d: Path, roots: Roots) -> None:
    folder = shutil.copytree(cells_3d, roots.raw / DATASET)
    _edit_json(folder, lambda d: d.pop("instance_maps"))
    result = run_script("evaluate.py", f"dataset={DATASET}", "selection_metric=SEG", roots=roots)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "selection_metric=SEG" in result.stderr and '"instance_maps": true' in result.stderr
    assert "Dice, IoU, HD95, NSD" in result.stderr
    no_match = run_script("evaluate.py", f"dataset={DATASET}", "match_iou=0", roots=roots)
    assert no_match.returncode == 2 and "match_iou=0.0: the IoU at which objects match" in no_match.stderr
