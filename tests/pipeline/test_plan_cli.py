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

    forced = run_script("plan.py", "num_workers=0", "dataset=Dataset900_Demo", "overwrite_configs=true", roots=roots)
    assert forced.returncode == 0
    assert "batch_size: 2" in configs["3d_fullres"].read_text()


def test_plan_2d_png_demo(demo_2d: Path, roots: Roots) -> None:
    shutil.copytree(demo_2d, roots.raw / demo_2d.name)
    result = run_script("plan.py", "num_workers=0", f"dataset={demo_2d.name}", roots=roots)
    assert result.returncode == 0, result.stderr
    assert set(_generated(roots, demo_2d.name)) == {"2d"}
    fingerprint = json.loads((roots.preprocessed / demo_2d.name / "fingerprint.json").read_text())
    assert fingerprint["spacings"][0] == [999.0, 1.0, 1.0] and fingerprint["shapes_after_crop"][0][0] == 1


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


def test_plan_from_fingerprint_alone_matches_full_planning(demo_3d: Path, roots: Roots, tmp_path: Path) -> None:
    shutil.copytree(demo_3d, roots.raw / demo_3d.name)
    assert run_script("plan.py", "num_workers=0", "dataset=Dataset900_Demo", roots=roots).returncode == 0
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


def test_import_nnunet_plans(demo_3d: Path, roots: Roots, tmp_path: Path) -> None:
    shutil.copytree(demo_3d, roots.raw / demo_3d.name)
    assert run_script("plan.py", "num_workers=0", "dataset=Dataset900_Demo", roots=roots).returncode == 0
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


@pytest.mark.parametrize("name", ["Dataset101_BraTS2015Mini", "Dataset102_TotalSegCTExample",
                                  "Dataset103_ISBI2012EM", "Dataset104_DRIVE"])
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


def test_plans_from_another_dataset_are_used_and_kept_apart(demo_3d: Path, roots: Roots) -> None:
    from nnlight.raw.synthetic import make_synthetic_dataset

    shutil.copytree(demo_3d, roots.raw / demo_3d.name)
    assert run_script("plan.py", "dataset=900", "num_workers=0", "preprocess=false", roots=roots).returncode == 0
    make_synthetic_dataset(roots.raw, 902, "Target", num_cases=3, shape=(24, 40, 36))
    result = run_script("plan.py", "dataset=902", "plans_from=Dataset900_Demo", "num_workers=0", roots=roots)
    assert result.returncode == 0, result.stderr[-3000:]
    source = json.loads((roots.preprocessed / "Dataset900_Demo" / "nnUNetPlans.json").read_text())
    name = "nnUNetPlans_from_Dataset900_Demo"
    target = json.loads((roots.preprocessed / "Dataset902_Target" / f"{name}.json").read_text())
    for configuration, planned in source["configurations"].items():
        moved = target["configurations"][configuration]
        assert moved["patch_size"] == planned["patch_size"] and moved["spacing"] == planned["spacing"]
        assert moved["architecture"] == planned["architecture"]
        assert moved["data_identifier"] == f"{name}_{configuration}"
        assert (roots.preprocessed / "Dataset902_Target" / f"{name}_{configuration}").is_dir()  # preprocessed
    assert set(_generated(roots, "Dataset902_Target")) == {f"{c}_{name}" for c in source["configurations"]}
    assert not (roots.preprocessed / "Dataset902_Target" / "nnUNetPlans.json").exists()  # its own plans untouched

    make_synthetic_dataset(roots.raw, 903, "OneChannel", num_cases=3, shape=(24, 40, 36), num_channels=1)
    refused = run_script("plan.py", "dataset=903", "plans_from=900", "num_workers=0", roots=roots)
    assert refused.returncode == 2 and "same channels" in refused.stderr
