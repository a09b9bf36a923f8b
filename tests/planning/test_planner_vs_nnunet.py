"""The planner against nnU-Net 2.8.1's own planners on 30 varied datasets x 4 presets.

``data/nnunet_2.8.1_plans.json`` holds randomly generated fingerprints (isotropic and anisotropic MRI,
large CT that needs 3d_lowres + cascade, 2D, anisotropy on the last axis, random spacings; 1-4 channels
with names mapping to every normalization scheme) and the plans that nnunetv2 2.8.1's ExperimentPlanner,
nnUNetPlannerResEncM/L/XL produced for them (run once in a separate environment; nnU-Net is not a
dependency). Only the fields nnlight plans are kept.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from nnlight.fingerprint import Fingerprint
from nnlight.pipeline.plan import parse
from nnlight.planning import PlannerSettings, plan_experiment, plans_to_nnunet
from nnlight.raw.dataset_json import parse_dataset_json

pytestmark = pytest.mark.integration

REFERENCE = json.loads((Path(__file__).parent / "data" / "nnunet_2.8.1_plans.json").read_text())
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PRESETS = ["default", "resenc_m", "resenc_l", "resenc_xl"]


@pytest.fixture(scope="module")
def presets() -> dict[str, PlannerSettings]:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return {p: parse(compose("plan", overrides=["dataset=x", f"planner={p}"])).planner for p in PRESETS}


def _comparable(exported: dict) -> dict:
    configurations = {}
    for name, c in exported["configurations"].items():
        d = {k: c[k] for k in ("data_identifier", "batch_size", "patch_size", "median_image_size_in_voxels",
                               "spacing", "normalization_schemes", "use_mask_for_norm", "batch_dice", "next_stage",
                               "inherits_from", "previous_stage") if k in c}
        if "architecture" in c:
            a = c["architecture"]["arch_kwargs"]
            d["architecture"] = {
                "network_class_name": c["architecture"]["network_class_name"].rsplit(".", 1)[-1],
                **{k: a[k] for k in ("n_stages", "features_per_stage", "kernel_sizes", "strides",
                                     "n_conv_per_stage_decoder")},
                "blocks": a.get("n_conv_per_stage", a.get("n_blocks_per_stage"))}
        configurations[name] = d
    return json.loads(json.dumps({"transpose_forward": exported["transpose_forward"],
                                  "configurations": configurations}))


def test_reference_covers_every_kind_of_configuration() -> None:
    names = {n for case in REFERENCE for plan in case["plans"].values() for n in plan["configurations"]}
    assert names == {"2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres"}


@pytest.mark.parametrize("case", REFERENCE, ids=[c["name"] for c in REFERENCE])
def test_plans_equal_nnunet(case: dict, presets: dict[str, PlannerSettings]) -> None:
    fingerprint = Fingerprint.from_dict(case["fingerprint"])
    dataset_json, problems = parse_dataset_json(case["dataset_json"], "reference")
    assert not problems
    for preset in PRESETS:
        ours = _comparable(plans_to_nnunet(plan_experiment(fingerprint, dataset_json, presets[preset],
                                                           case["name"])))
        theirs = json.loads(json.dumps(case["plans"][preset]))  # a copy: entries are popped below
        for name in theirs["configurations"]:
            for key in ("spacing", "median_image_size_in_voxels"):
                if key in theirs["configurations"][name]:
                    assert ours["configurations"][name].pop(key) == pytest.approx(
                        theirs["configurations"][name].pop(key), rel=1e-9), (preset, name, key)
        assert ours == theirs, preset
