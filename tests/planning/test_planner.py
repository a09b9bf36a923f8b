"""The planner reproduces nnU-Net v2's ExperimentPlanner rules."""

from __future__ import annotations

import numpy as np
import pytest

from nnlight.fingerprint import Fingerprint
from nnlight.planning import PlannerSettings, plan_experiment, plans_from_nnunet, plans_to_nnunet
from nnlight.planning.planner import check_memory
from nnlight.planning.rules import (
    fullres_target_spacing,
    normalization_schemes,
    preprocessing_peak_bytes,
    transpose_axes,
)
from nnlight.planning.topology import get_pool_and_conv_props
from nnlight.raw.dataset_json import parse_dataset_json
from nnlight.utils.errors import UserError

pytestmark = pytest.mark.integration

STATS = {"mean": 0.0, "median": 0.0, "std": 1.0, "min": -1.0, "max": 1.0, "percentile_99_5": 1.0,
         "percentile_00_5": -1.0}


def fingerprint(spacings: list, shapes: list, relative_size: float = 1.0, channels: int = 1) -> Fingerprint:
    return Fingerprint(spacings=[list(map(float, s)) for s in spacings], shapes_after_crop=[list(s) for s in shapes],
                       foreground_intensity_properties_per_channel={str(c): STATS for c in range(channels)},
                       median_relative_size_after_cropping=relative_size)


def dataset_json(channels: dict, labels: dict, num_training: int, ending: str = ".nii.gz"):
    parsed, problems = parse_dataset_json({"channel_names": channels, "labels": labels,
                                           "numTraining": num_training, "file_ending": ending}, "test")
    assert not problems
    return parsed


def test_hippocampus_golden_plan() -> None:
    """NNUNET_REFERENCE.md: MSD Task04 Hippocampus, default planner, 8 GB."""
    fp = fingerprint([[1, 1, 1]] * 260, [[36, 50, 35]] * 260)
    dj = dataset_json({"0": "MRI"}, {"background": 0, "Anterior": 1, "Posterior": 2}, 260)
    plans = plan_experiment(fp, dj, PlannerSettings(), "Dataset004_Hippocampus")

    assert sorted(plans.configurations) == ["2d", "3d_fullres"]  # no 3d_lowres, no cascade
    assert plans.transpose_forward == [0, 1, 2]
    full = plans.configurations["3d_fullres"]
    assert full.spacing == [1.0, 1.0, 1.0]
    assert full.patch_size == [40, 56, 40]
    assert full.batch_size == 9
    assert full.architecture.n_stages == 4
    assert full.architecture.strides == [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert full.architecture.kernel_sizes == [[3, 3, 3]] * 4
    assert full.architecture.features_per_stage == [32, 64, 128, 256]
    assert full.normalization_schemes == ["ZScoreNormalization"] and full.use_mask_for_norm == [False]
    assert full.batch_dice is False
    two_d = plans.configurations["2d"]
    assert two_d.patch_size == [56, 40]
    assert two_d.batch_size == 366
    assert two_d.architecture.n_stages == 4
    assert two_d.architecture.features_per_stage == [32, 64, 128, 256]
    assert two_d.batch_dice is True


def test_anisotropic_axis_uses_10th_percentile_and_is_transposed_first() -> None:
    spacings = [[1.5, 1.5, z] for z in (5, 5, 6, 6.5, 10, 10, 10, 10, 10, 10)]
    shapes = [[200, 220, 12]] * 10
    target, note = fullres_target_spacing(fingerprint(spacings, shapes))
    assert target[2] == pytest.approx(np.percentile([s[2] for s in spacings], 10))
    assert note is not None and "10th percentile" in note
    forward, backward = transpose_axes(target)
    assert forward == [2, 0, 1] and backward == [1, 2, 0]


def test_anisotropy_needs_few_voxels_too() -> None:
    """Coarse z with as many voxels as in-plane is not 'anisotropic' for the rule: the median is kept."""
    spacings = [[5, 1, 1], [10, 1, 1], [10, 1, 1]]
    target, note = fullres_target_spacing(fingerprint(spacings, [[200, 200, 200]] * 3))
    assert list(target) == [10, 1, 1] and note is None


def test_tenth_percentile_never_finer_than_other_axes() -> None:
    spacings = [[0.3, 0.5, 0.5]] * 3 + [[8.0, 0.5, 0.5]] * 17
    target, _ = fullres_target_spacing(fingerprint(spacings, [[10, 300, 300]] * 20))
    assert target[0] == pytest.approx(0.5 + 1e-5)


def test_normalization_by_channel_name_and_mask_rule() -> None:
    schemes, mask = normalization_schemes(["CT", "T2", "noNorm", "rescale_to_0_1", "RGB_to_0_1", "zscore"], 0.7)
    assert schemes == ["CTNormalization", "ZScoreNormalization", "NoNormalization", "RescaleTo01Normalization",
                       "RGBTo01Normalization", "ZScoreNormalization"]
    assert mask == [False, True, False, False, False, True]  # only z-score can use the mask
    assert normalization_schemes(["T2"], 0.75)[1] == [False]  # threshold is strict: < 3/4


def test_topology_anisotropic_kernels_and_padding() -> None:
    topo = get_pool_and_conv_props([5.0, 1.0, 1.0], [20, 190, 160], 4)
    assert topo.kernel_sizes[0] == [1, 3, 3]  # z is >2x coarser: no z-kernel until it catches up
    assert topo.strides[1] == [1, 2, 2]
    assert all(p % d == 0 for p, d in zip(topo.patch_size, topo.divisible_by, strict=True))
    assert topo.kernel_sizes[-1] == [3, 3, 3]


def test_lowres_and_cascade_for_large_images() -> None:
    fp = fingerprint([[1.0, 0.8, 0.8]] * 40, [[450, 512, 512]] * 40)
    dj = dataset_json({"0": "CT"}, {"background": 0, "liver": 1, "tumor": 2}, 40)
    plans = plan_experiment(fp, dj, PlannerSettings(), "Dataset003_Liver")
    assert sorted(plans.configurations) == ["2d", "3d_cascade_fullres", "3d_fullres", "3d_lowres"]
    low, full = plans.configurations["3d_lowres"], plans.configurations["3d_fullres"]
    assert np.prod(low.patch_size) / np.prod(low.median_image_size_in_voxels) >= 0.25
    assert all(a > b for a, b in zip(low.spacing, full.spacing, strict=True))
    assert low.next_stage == "3d_cascade_fullres" and low.batch_dice is False and full.batch_dice is True
    cascade = plans.configurations["3d_cascade_fullres"]
    assert cascade.inherits_from == "3d_fullres" and cascade.previous_stage == "3d_lowres"
    assert full.normalization_schemes == ["CTNormalization"]


def test_2d_dataset_has_only_2d_configuration() -> None:
    fp = fingerprint([[999, 1, 1]] * 20, [[1, 584, 565]] * 20, channels=3)
    dj = dataset_json({"0": "R", "1": "G", "2": "B"}, {"background": 0, "vessel": 1}, 20, ".png")
    plans = plan_experiment(fp, dj, PlannerSettings(), "Dataset104_DRIVE")
    assert list(plans.configurations) == ["2d"]
    assert plans.image_reader_writer == "NaturalImage2DIO"


def test_memory_target_changes_patch_and_batch() -> None:
    fp = fingerprint([[1, 1, 1]] * 100, [[200, 200, 200]] * 100)
    dj = dataset_json({"0": "MRI"}, {"background": 0, "a": 1}, 100)
    small = plan_experiment(fp, dj, PlannerSettings(), "Dataset001_X").configurations["3d_fullres"]
    large = plan_experiment(fp, dj, PlannerSettings(gpu_memory_target_gb=40), "Dataset001_X"
                            ).configurations["3d_fullres"]
    assert np.prod(large.patch_size) * large.batch_size > np.prod(small.patch_size) * small.batch_size


def test_nnunet_plans_json_round_trip() -> None:
    fp = fingerprint([[1.0, 0.8, 0.8]] * 40, [[450, 512, 512]] * 40)
    dj = dataset_json({"0": "CT"}, {"background": 0, "liver": 1}, 40)
    plans = plan_experiment(fp, dj, PlannerSettings(), "Dataset003_Liver")
    exported = plans_to_nnunet(plans)
    assert exported["configurations"]["3d_cascade_fullres"] == {"inherits_from": "3d_fullres",
                                                                "previous_stage": "3d_lowres"}
    imported = plans_from_nnunet(exported)
    assert imported.configurations == plans.configurations
    assert plans_to_nnunet(imported) == exported


def test_extreme_anisotropy_is_refused_with_the_fix_not_a_division_by_zero() -> None:
    fp = fingerprint([[1e6, 1, 1]] * 4, [[8, 32, 32]] * 4)
    dj = dataset_json({"0": "MRI"}, {"background": 0, "a": 1}, 4)
    with pytest.raises(UserError, match=r"so anisotropic \(1e\+06:1\).*overwrite_target_spacing"):
        plan_experiment(fp, dj, PlannerSettings(), "Dataset913_Aniso")


def test_a_plan_whose_resampling_would_not_fit_in_memory_is_refused() -> None:
    """One case with a 1000x coarser spacing than the others is resampled 10^9-fold: refused before anything is
    written, naming the case and the memory it would need."""
    fp = fingerprint([[1, 1, 1]] * 3 + [[1000, 1000, 1000]], [[64, 64, 64]] * 4)
    dj = dataset_json({"0": "MRI"}, {"background": 0, "a": 1}, 4)
    with pytest.raises(UserError, match=r"training case 3 .* more than this machine's .* GiB"):
        plan_experiment(fp, dj, PlannerSettings(), "Dataset914_Coarse")
    fine = fingerprint([[1, 1, 1]] * 4, [[64, 64, 64]] * 4)
    configurations = plan_experiment(fine, dj, PlannerSettings(), "Dataset915_Fine").configurations
    one_channel = preprocessing_peak_bytes(64**3, 64**3, 1)
    check_memory(configurations, [0, 1, 2], fine, 1, memory=one_channel)  # just fits
    with pytest.raises(UserError, match="training case 0"):
        check_memory(configurations, [0, 1, 2], fine, 2, memory=one_channel)
