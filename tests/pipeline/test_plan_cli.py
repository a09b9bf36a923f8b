"""plan.py end to end: synthetic datasets, generated configs that compose in Hydra, re-runs, other modes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from nnlight.nets import build_network
from tests.conftest import Roots, run_script, shared_dataset

pytestmark = pytest.mark.cli


def _compose_plan(configs_root: Path, dataset: str, config_name: str) -> dict:
    """Select a generated config the way train.py will: ``plan=<Dataset>/<configuration>``."""
    with initialize_config_dir(config_dir=str(configs_root.resolve()), version_base="1.3"):
        cfg = compose(overrides=[f"+plan={dataset}/{config_name}"])
    return OmegaConf.to_container(cfg.plan, resolve=True)


def _generated(roots: Roots, dataset: str) -> dict[str, Path]:
    folder = roots.preprocessed / "configs" / "plan" / dataset
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def test_plan_3d_demo_end_to_end(demo_3d: Path, roots: Roots) -> None:
    shutil.copytree(demo_3d, roots.raw / demo_3d.name)
    result = run_script("plan.py", "dataset=900", roots=roots)  # by number, with 2 worker processes
    assert result.returncode == 0, result.stderr
    assert "Plans for Dataset900_Demo" in result.stdout and "Why:" in result.stdout

    dataset_dir = roots.preprocessed / "Dataset900_Demo"
    fingerprint = json.loads((dataset_dir / "fingerprint.json").read_text())
    assert len(fingerprint["spacings"]) == 5
    assert set(fingerprint["foreground_intensity_properties_per_channel"]) == {"0", "1"}
    assert json.loads((dataset_dir / "nnUNetPlans.json").read_text())["plans_name"] == "nnUNetPlans"
    for identifier in ("nnUNetPlans_2d", "nnUNetPlans_3d_fullres"):
        assert len(list((dataset_dir / identifier).glob("*.json"))) == 5  # every case preprocessed

    configs = _generated(roots, "Dataset900_Demo")
    assert set(configs) == {"2d", "3d_fullres"}
    for name in configs:
        plan = _compose_plan(roots.preprocessed / "configs", "Dataset900_Demo", name)
        assert plan["configuration"] == name
        arch = plan["architecture"]
        net_kwargs = {k: v for k, v in arch.items() if k not in ("network", "blocks_per_stage")}
        net = build_network(arch["network"], input_channels=len(plan["channel_names"]),
                            num_classes=len(plan["labels"]), n_conv_per_stage=arch["blocks_per_stage"], **net_kwargs)
        assert net.compute_conv_feature_map_size(plan["patch_size"]) > 0
    header = configs["3d_fullres"].read_text().splitlines()[:6]
    assert any("nnlight 0.1.0" in line and "planner preset 'default'" in line and "fingerprint sha256:" in line
               for line in header)


@pytest.mark.slow  # 20 s: a rerun of plan.py is also checked by test_plan_onto_a_full_disk_... (suite time)
def test_rerun_reuses_fingerprint_and_keeps_edited_configs(demo_3d: Path, roots: Roots) -> None:
    shutil.copytree(demo_3d, roots.raw / demo_3d.name)
    assert run_script("plan.py", "num_workers=0", "dataset=Dataset900_Demo", roots=roots).returncode == 0
    configs = _generated(roots, "Dataset900_Demo")
    edited = configs["3d_fullres"].read_text().replace("batch_size: 2", "batch_size: 5")
    configs["3d_fullres"].write_text(edited)

    again = run_script("plan.py", "num_workers=0", "dataset=Dataset900_Demo", roots=roots)
    assert again.returncode == 0, again.stderr
    assert "Reusing fingerprint" in again.stdout
    assert "Preprocessed nnUNetPlans_3d_fullres: 0 case(s) written, 5 already done" in again.stdout
    assert "kept (edited)" in again.stdout
    assert configs["3d_fullres"].read_text() == edited
    assert "unchanged" in again.stdout  # the 2d config was not rewritten

    forced = run_script("plan.py", "num_workers=0", "dataset=Dataset900_Demo", "overwrite_configs=true",
                        "preprocess=false", roots=roots)  # configs only
    assert forced.returncode == 0
    assert "batch_size: 2" in configs["3d_fullres"].read_text()


def test_plan_2d_png_demo(demo_2d: Path, roots: Roots) -> None:
    shutil.copytree(demo_2d, roots.raw / demo_2d.name)
    result = run_script("plan.py", "num_workers=0", f"dataset={demo_2d.name}", roots=roots)
    assert result.returncode == 0, result.stderr
    assert set(_generated(roots, demo_2d.name)) == {"2d"}
    fingerprint = json.loads((roots.preprocessed / demo_2d.name / "fingerprint.json").read_text())
    assert fingerprint["spacings"][0] == [999.0, 1.0, 1.0] and fingerprint["shapes_after_crop"][0][0] == 1


@pytest.mark.slow  # 13 s; the presets are unit-tested against nnU-Net (tests/planning). Keeps the suite < 15 min
def test_planner_presets_and_memory_target(demo_3d: Path, roots: Roots) -> None:
    shutil.copytree(demo_3d, roots.raw / demo_3d.name)
    result = run_script("plan.py", "num_workers=0", "dataset=Dataset900_Demo", "planner=resenc_l",
                        "planner.gpu_memory_target_gb=12", roots=roots)
    assert result.returncode == 0, result.stderr
    configs = _generated(roots, "Dataset900_Demo")
    assert set(configs) == {"2d_resenc_l", "3d_fullres_resenc_l"}
    plan = _compose_plan(roots.preprocessed / "configs", "Dataset900_Demo", "3d_fullres_resenc_l")
    assert plan["architecture"]["network"] == "ResidualEncoderUNet"
    assert plan["data_identifier"] == "nnUNetPlans_3d_fullres"  # ResEnc reuses the default preprocessed data
    assert (roots.preprocessed / "Dataset900_Demo" / "nnUNetResEncUNetLPlans.json").is_file()


@pytest.mark.slow  # 16 s: a second full planning; keeps the default suite under 15 minutes on 2 cores
def test_plan_from_fingerprint_alone_matches_full_planning(demo_3d: Path, roots: Roots, tmp_path: Path) -> None:
    shutil.copytree(demo_3d, roots.raw / demo_3d.name)
    assert run_script("plan.py", "num_workers=0", "dataset=Dataset900_Demo", "preprocess=false",
                      roots=roots).returncode == 0  # the configs are compared, not the data
    full = _generated(roots, "Dataset900_Demo")
    fingerprint = tmp_path / "dataset_fingerprint.json"
    shutil.copy(roots.preprocessed / "Dataset900_Demo" / "fingerprint.json", fingerprint)
    dataset_json = tmp_path / "dataset.json"
    shutil.copy(demo_3d / "dataset.json", dataset_json)

    other = Roots(tmp_path / "r2", tmp_path / "p2", tmp_path / "res2")  # no raw images anywhere
    result = run_script("plan.py", "dataset=Dataset900_Demo", f"fingerprint={fingerprint}",
                        f"dataset_json={dataset_json}", roots=other)
    assert result.returncode == 0, result.stderr
    alone = _generated(other, "Dataset900_Demo")
    assert {k: _body(v) for k, v in alone.items()} == {k: _body(v) for k, v in full.items()}


@pytest.mark.slow  # 16 s: the plans' round trip through nnU-Net's format stays in tests/planning/test_planner.py
def test_import_nnunet_plans(demo_3d: Path, roots: Roots, tmp_path: Path) -> None:
    shutil.copytree(demo_3d, roots.raw / demo_3d.name)
    assert run_script("plan.py", "num_workers=0", "dataset=Dataset900_Demo", "preprocess=false",
                      roots=roots).returncode == 0
    exported = roots.preprocessed / "Dataset900_Demo" / "nnUNetPlans.json"
    other = Roots(roots.raw, tmp_path / "p2", tmp_path / "res2")
    result = run_script("plan.py", "dataset=Dataset900_Demo", f"nnunet_plans={exported}", roots=other)
    assert result.returncode == 0, result.stderr
    assert {k: _body(v) for k, v in _generated(other, "Dataset900_Demo").items()} == \
        {k: _body(v) for k, v in _generated(roots, "Dataset900_Demo").items()}
    assert json.loads((other.preprocessed / "Dataset900_Demo" / "nnUNetPlans.json").read_text()) == \
        json.loads(exported.read_text())


def _body(path: Path) -> str:
    """A generated config without its header (which holds the date and provenance)."""
    return "\n".join(line for line in path.read_text().splitlines() if not line.startswith("#"))


@pytest.mark.parametrize("name", [
    pytest.param("Dataset101_BraTS2015Mini", marks=pytest.mark.slow), "Dataset102_TotalSegCTExample",
    "Dataset103_ISBI2012EM", pytest.param("Dataset104_DRIVE", marks=pytest.mark.slow)])  # 2 of 4 in the default run
def test_plan_shared_datasets_equals_nnunet(name: str, roots: Roots) -> None:
    """Fingerprint and plans equal those of nnU-Net 2.8.1 on the same data.

    ``data/nnunet_2.8.1_<Dataset>.json`` holds the dataset_fingerprint.json and nnUNetPlans.json that
    nnunetv2 2.8.1 (nnUNetv2 fingerprint extractor + ExperimentPlanner, 8 GB) wrote for these datasets,
    run once in a separate environment.
    """
    folder = shared_dataset(name)
    result = run_script("plan.py", "num_workers=0", f"dataset={folder}", roots=roots)
    assert result.returncode == 0, result.stderr
    reference = json.loads((Path(__file__).parent / "data" / f"nnunet_2.8.1_{name}.json").read_text())

    ours = json.loads((roots.preprocessed / name / "fingerprint.json").read_text())
    theirs = reference["dataset_fingerprint.json"]
    assert ours["shapes_after_crop"] == theirs["shapes_after_crop"]
    np.testing.assert_allclose(ours["spacings"], theirs["spacings"])
    assert ours["median_relative_size_after_cropping"] == pytest.approx(theirs["median_relative_size_after_cropping"])
    for channel, stats in theirs["foreground_intensity_properties_per_channel"].items():
        assert ours["foreground_intensity_properties_per_channel"][channel] == pytest.approx(stats, rel=1e-6)

    plans = json.loads((roots.preprocessed / name / "nnUNetPlans.json").read_text())
    assert plans["configurations"] == reference["nnUNetPlans.json"]["configurations"]
    assert plans["transpose_forward"] == reference["nnUNetPlans.json"]["transpose_forward"]
    for config in _generated(roots, name):
        plan = _compose_plan(roots.preprocessed / "configs", name, config)
        assert plan["dataset"] == name


def test_plans_from_another_dataset_are_used_and_kept_apart(preprocessed, tmp_path: Path) -> None:
    from nnlight.pipeline.plan import transferred_plans
    from nnlight.raw.dataset_json import parse_dataset_json
    from nnlight.utils.errors import UserError

    source_folder, source = preprocessed
    target_json = {"channel_names": {"0": "T1", "1": "T2"}, "labels": {"background": 0, "a": 1}, "numTraining": 3,
                   "file_ending": ".nii.gz"}
    dataset_json, _ = parse_dataset_json(target_json, "target")
    for reference in ("Dataset900_Demo", "900", str(source_folder / "nnUNetPlans.json")):
        plans, path = transferred_plans(reference, "Dataset902_Target", dataset_json, source_folder.parent,
                                        "nnUNetPlans")
        assert path == source_folder / "nnUNetPlans.json" and plans.dataset_name == "Dataset902_Target"
    name = "nnUNetPlans_from_Dataset900_Demo"
    assert plans.plans_name == name
    assert plans.foreground_intensity_properties_per_channel == source.foreground_intensity_properties_per_channel
    for configuration, planned in source.configurations.items():
        moved = plans.configurations[configuration]
        assert (moved.patch_size, moved.spacing, moved.architecture) == \
            (planned.patch_size, planned.spacing, planned.architecture)
        assert moved.data_identifier == f"{name}_{configuration}"  # its own case store, never the target's own
    one_channel, _ = parse_dataset_json({**target_json, "channel_names": {"0": "CT"}}, "target")
    with pytest.raises(UserError, match="same channels"):
        transferred_plans("900", "Dataset903_CT", one_channel, source_folder.parent, "nnUNetPlans")
    with pytest.raises(UserError, match="plan the source dataset first"):
        transferred_plans("Dataset999_None", "Dataset903_CT", dataset_json, source_folder.parent, "nnUNetPlans")
