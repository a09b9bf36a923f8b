"""nnU-Net v2's ExperimentPlanner as a pure function of (fingerprint, dataset.json, settings)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from nnlight.fingerprint import Fingerprint
from nnlight.nets import build_network
from nnlight.planning.instance_plan import plan_instances
from nnlight.planning.plans import Architecture, ConfigurationPlan, Plans
from nnlight.planning.rules import (
    RESAMPLING_DATA,
    RESAMPLING_PROBABILITIES,
    RESAMPLING_SEG,
    Numbers,
    case_preprocessing_bytes,
    compute_new_shape,
    fullres_target_spacing,
    normalization_schemes,
    transpose_axes,
)
from nnlight.planning.settings import PlannerSettings
from nnlight.planning.topology import Topology, get_pool_and_conv_props
from nnlight.raw.dataset_json import DatasetJson
from nnlight.raw.io import image_format
from nnlight.utils.errors import UserError
from nnlight.utils.machine import total_memory_bytes


def _fmt(values: Numbers) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


class _Estimator:
    """The planner's memory proxy: instantiate the real network on the meta device and count conv outputs."""

    def __init__(self, settings: PlannerSettings, input_channels: int, num_classes: int) -> None:
        self.settings = settings
        self.input_channels = input_channels
        self.num_classes = num_classes
        self._cache: dict[tuple, int] = {}

    def architecture(self, topology: Topology, max_features: int) -> Architecture:
        s = self.settings
        n = topology.n_stages
        return Architecture(
            network=s.network,
            n_stages=n,
            features_per_stage=[min(max_features, s.base_num_features * 2 ** i) for i in range(n)],
            kernel_sizes=topology.kernel_sizes,
            strides=topology.strides,
            blocks_per_stage=list(s.blocks_per_stage_encoder[:n]),
            n_conv_per_stage_decoder=list(s.blocks_per_stage_decoder[: n - 1]),
        )

    def __call__(self, topology: Topology, architecture: Architecture) -> int:
        key = (tuple(topology.patch_size), tuple(map(tuple, topology.strides)))
        if key not in self._cache:
            with torch.device("meta"):
                net = build_network(architecture.network, input_channels=self.input_channels,
                                    num_classes=self.num_classes, deep_supervision=False,
                                    **architecture.network_kwargs())
            self._cache[key] = net.compute_conv_feature_map_size(topology.patch_size)
        return self._cache[key]


def _initial_patch_size(spacing: np.ndarray) -> list[int]:
    """Aspect ratio 1/spacing at the volume of 256^3 (3D) or 2048^2 (2D), before clipping to the image."""
    inverse = 1 / np.asarray(spacing, dtype=float)
    dim = len(spacing)
    edge = 256 if dim == 3 else 2048
    return [round(i) for i in inverse * (edge ** dim / np.prod(inverse)) ** (1 / dim)]


def plan_configuration(name: str, spacing: Numbers, median_shape: Numbers,
                       approx_dataset_voxels: float, settings: PlannerSettings, estimator: _Estimator,
                       normalization: tuple[list[str], list[bool]]) -> ConfigurationPlan:
    """Patch size, topology and batch size for one configuration (nnU-Net's ``get_plans_for_configuration``)."""
    spacing = np.asarray(spacing, dtype=float)
    if np.any(spacing <= 0):
        raise UserError(f"{name}: spacing must be positive, got {list(spacing)}; check the images' headers")
    dim = len(spacing)
    s = settings
    max_features = s.max_features_2d if dim == 2 else s.max_features_3d
    min_edge = s.featuremap_min_edge_length
    notes = []

    unclipped = _initial_patch_size(spacing)
    initial = [min(p, m) for p, m in zip(unclipped, median_shape[:dim], strict=True)]  # may stay fractional
    if min(initial) < 1:
        axis = int(np.argmin(initial))
        raise UserError(f"{name}: the spacing {_fmt(spacing)} is so anisotropic ({spacing.max() / spacing.min():.0e}"
                        f":1) that nnU-Net's patch has {initial[axis]} voxels along axis {axis}; check the images' "
                        "spacing in their headers, or set planner.overwrite_target_spacing=[...]")
    topology = get_pool_and_conv_props(spacing, initial, min_edge)
    architecture = estimator.architecture(topology, max_features)
    estimate = estimator(topology, architecture)
    padded_initial = list(topology.patch_size)

    reference = (s.reference_val_2d if dim == 2 else s.reference_val_3d) * (
        s.gpu_memory_target_gb / s.reference_val_corresp_gb)
    ref_bs = s.reference_batch_size_2d if dim == 2 else s.reference_batch_size_3d

    def too_large(est: float) -> bool:
        return est / ref_bs * s.min_batch_size > reference if s.shrink_rule == "min_batch" else est > reference

    while too_large(estimate):
        patch = list(topology.patch_size)
        axis = int(np.argsort([p / m for p, m in zip(patch, median_shape[:dim], strict=True)])[-1])
        # Re-derive the divisibility after a tentative step, so sizes like 224 (= 7 * 32) are not skipped.
        trial = list(patch)
        trial[axis] -= topology.divisible_by[axis]
        step = get_pool_and_conv_props(spacing, trial, min_edge).divisible_by[axis]
        patch[axis] -= step
        topology = get_pool_and_conv_props(spacing, patch, min_edge)
        architecture = estimator.architecture(topology, max_features)
        estimate = estimator(topology, architecture)

    patch_size = list(topology.patch_size)
    if patch_size != padded_initial:
        notes.append(f"patch shrunk from {padded_initial} to {patch_size} to fit {s.gpu_memory_target_gb:g} GB")
    elif initial != unclipped:
        notes.append(f"patch = image-sized: initial {unclipped} clipped to the median shape "
                     f"{_fmt(median_shape[:dim])}, padded to multiples of {topology.divisible_by}")

    batch_by_memory = round(reference / estimate * ref_bs)
    batch_cap = round(approx_dataset_voxels * s.max_dataset_covered / np.prod(patch_size, dtype=np.float64))
    batch_size = max(min(batch_by_memory, batch_cap), s.min_batch_size)
    if batch_cap < batch_by_memory and batch_size == batch_cap:
        notes.append(f"batch {batch_size} = {s.max_dataset_covered:.0%} dataset cap (memory allows {batch_by_memory})")
    elif batch_size > min(batch_by_memory, batch_cap):
        notes.append(f"batch raised to the minimum {s.min_batch_size}")

    return ConfigurationPlan(
        name=name,
        data_identifier=s.data_identifier(name),
        batch_size=int(batch_size),
        patch_size=[int(p) for p in patch_size],
        median_image_size_in_voxels=[float(m) for m in median_shape[:dim]],
        spacing=[float(x) for x in spacing],
        normalization_schemes=normalization[0],
        use_mask_for_norm=normalization[1],
        resampling_data=dict(RESAMPLING_DATA),
        resampling_seg=dict(RESAMPLING_SEG),
        resampling_probabilities=dict(RESAMPLING_PROBABILITIES),
        architecture=architecture,
        batch_dice=False,
        notes=notes,
    )


def plan_experiment(fingerprint: Fingerprint, dataset_json: DatasetJson, settings: PlannerSettings,
                    dataset_name: str) -> Plans:
    """All configurations nnU-Net would create for this dataset: 2d, 3d_fullres, 3d_lowres + cascade."""
    s = settings
    plan_notes: list[str] = []
    if s.overwrite_target_spacing is not None:
        fullres_spacing, spacing_note = np.asarray(s.overwrite_target_spacing, dtype=float), None
        plan_notes.append(f"target spacing set by the user: {_fmt(fullres_spacing)}")
    else:
        fullres_spacing, spacing_note = fullres_target_spacing(fingerprint, s.anisotropy_threshold)
    forward, backward = transpose_axes(fullres_spacing, s.suppress_transpose)
    if forward != [0, 1, 2]:
        plan_notes.append(f"axes transposed {forward}: coarsest axis first, so 2d slices are the fine planes")
    spacing_t = fullres_spacing[forward]

    new_shapes = [compute_new_shape(shape, spacing, fullres_spacing)
                  for spacing, shape in zip(fingerprint.spacings, fingerprint.shapes_after_crop, strict=True)]
    median_shape_t = np.median(new_shapes, 0)[forward]
    approx_voxels = float(np.prod(median_shape_t, dtype=np.float64) * dataset_json.num_training)

    normalization = normalization_schemes(dataset_json.channel_name_list,
                                          fingerprint.median_relative_size_after_cropping,
                                          bool(dataset_json.raw.get("use_mask_for_norm")))
    if any(normalization[1]):
        plan_notes.append(f"z-score inside the non-zero mask: median size after cropping "
                          f"{fingerprint.median_relative_size_after_cropping:.3f} < 0.75")
    estimator = _Estimator(s, dataset_json.num_channels, len(dataset_json.training_labels))
    configurations: dict[str, ConfigurationPlan] = {}

    fullres = lowres = None
    if median_shape_t[0] != 1:
        fullres = plan_configuration("3d_fullres", spacing_t, median_shape_t, approx_voxels, s, estimator,
                                     normalization)
        if spacing_note:
            fullres.notes.insert(0, spacing_note)
        lowres, lowres_note = _plan_lowres(fullres, median_shape_t, dataset_json.num_training, s, estimator,
                                           normalization)
        plan_notes.append(lowres_note)

    plan_2d = plan_configuration("2d", spacing_t[1:], median_shape_t[1:], approx_voxels, s, estimator,
                                 normalization)
    configurations["2d"] = replace(plan_2d, batch_dice=True)
    if lowres is not None:
        configurations["3d_lowres"] = replace(lowres, batch_dice=False, next_stage="3d_cascade_fullres")
    if fullres is not None:
        configurations["3d_fullres"] = replace(fullres, batch_dice=lowres is not None)
        if lowres is not None:
            configurations["3d_cascade_fullres"] = replace(
                configurations["3d_fullres"], name="3d_cascade_fullres", inherits_from="3d_fullres",
                previous_stage="3d_lowres", notes=["3d_fullres trained on top of the 3d_lowres prediction"])

    check_memory(configurations, backward, fingerprint, dataset_json.num_channels)
    instances = None
    if dataset_json.instance_maps:
        instances, instance_note = plan_instances(fingerprint, dataset_json, s, fullres_spacing)
        plan_notes.append(instance_note)
    median_spacing = np.median(fingerprint.spacings, 0)[forward]
    median_shape = np.median(fingerprint.shapes_after_crop, 0)[forward]
    return Plans(
        dataset_name=dataset_name,
        plans_name=s.plans_name,
        planner=s.preset,
        transpose_forward=forward,
        transpose_backward=backward,
        original_median_spacing_after_transp=[float(x) for x in median_spacing],
        original_median_shape_after_transp=[round(float(x)) for x in median_shape],
        image_reader_writer=_reader_writer_name(dataset_json),
        foreground_intensity_properties_per_channel=fingerprint.foreground_intensity_properties_per_channel,
        configurations=configurations,
        experiment_planner_used=s.nnunet_planner_class,
        instances=instances,
        notes=[n for n in plan_notes if n],
    )


def check_memory(configurations: dict[str, ConfigurationPlan], transpose_backward: Sequence[int],
                 fingerprint: Fingerprint, channels: int, memory: int | None = None) -> None:
    """Every case the plan resamples fits the machine's memory (checked before anything is written): a spacing gone
    wrong would otherwise show as a 100 GiB allocation half-way through preprocessing."""
    memory = memory or total_memory_bytes()
    for conf in configurations.values():
        if len(conf.spacing) != 3:
            continue
        target = [conf.spacing[i] for i in transpose_backward]
        for i, (spacing, shape) in enumerate(zip(fingerprint.spacings, fingerprint.shapes_after_crop, strict=True)):
            resampled, need = case_preprocessing_bytes(shape, spacing, target, channels)
            if need > memory:
                raise UserError(
                    f"{conf.name}: training case {i} ({_fmt(shape)} voxels at spacing {_fmt(spacing)}) would be "
                    f"resampled to {_fmt(resampled)} voxels at {_fmt(target)}, about {need / 2**30:.0f} GiB of memory "
                    f"while preprocessing, more than this machine's {memory / 2**30:.0f} GiB. Check the images' "
                    "spacing in their headers, or set planner.overwrite_target_spacing=[...]")


def _plan_lowres(fullres: ConfigurationPlan, median_shape_t: np.ndarray, num_training: int,
                 settings: PlannerSettings, estimator: _Estimator,
                 normalization: tuple[list[str], list[bool]]) -> tuple[ConfigurationPlan | None, str]:
    """Coarsen the spacing by 1.03 per step until the patch covers >= 25 % of the median image."""
    s = settings
    fullres_spacing = np.asarray(fullres.spacing)
    lowres_spacing = fullres_spacing.copy()
    median_voxels = float(np.prod(median_shape_t, dtype=np.float64))
    patch_voxels = float(np.prod(fullres.patch_size, dtype=np.float64))
    lowres = None
    steps = 0
    while patch_voxels / median_voxels < s.lowres_creation_threshold:
        coarse = lowres_spacing.max() / lowres_spacing > 2
        if np.any(coarse):
            lowres_spacing[coarse] *= s.lowres_spacing_increase_factor
        else:
            lowres_spacing *= s.lowres_spacing_increase_factor
        steps += 1
        scaled_shape = fullres_spacing / lowres_spacing * median_shape_t
        median_voxels = float(np.prod(scaled_shape, dtype=np.float64))
        lowres = plan_configuration("3d_lowres", lowres_spacing.copy(), [round(float(x)) for x in scaled_shape],
                                    median_voxels * num_training, s, estimator, normalization)
        patch_voxels = float(np.prod(lowres.patch_size, dtype=np.float64))
    if lowres is None:
        return None, (f"no 3d_lowres: the 3d_fullres patch already covers {patch_voxels / median_voxels:.0%} "
                      f"(>= {s.lowres_creation_threshold:.0%}) of the median image")
    ratio = float(np.prod(median_shape_t, dtype=np.float64)) / median_voxels
    if ratio < 2:
        return None, f"3d_lowres dropped: its images would only be {ratio:.2f}x smaller than 3d_fullres (< 2x)"
    lowres.notes.insert(0, f"spacing x{s.lowres_spacing_increase_factor}^{steps} until the patch covers "
                           f">= {s.lowres_creation_threshold:.0%} of the median image")
    return lowres, "3d_lowres + 3d_cascade_fullres: the 3d_fullres patch covers too little of the median image"


def _reader_writer_name(dataset_json: DatasetJson) -> str:
    return image_format(dataset_json.file_ending, dataset_json.overwrite_image_reader_writer).name
