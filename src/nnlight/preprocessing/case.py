"""One case through nnU-Net's preprocessing: transpose → crop → normalize → resample → class locations.

Shared by offline preprocessing and inference, so training and prediction cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nnlight.planning.rules import compute_new_shape
from nnlight.preprocessing.normalization import normalize
from nnlight.preprocessing.resampling import resample_image, resample_nearest, resample_segmentation
from nnlight.raw.cropping import crop_to_nonzero
from nnlight.raw.instances import InstancePlan, border_core

CLASS_LOCATION_SAMPLES = 10000
CLASS_LOCATION_MIN_FRACTION = 0.01
CLASS_LOCATION_SEED = 1234
BORDER_THICKNESS_KEY = "border_thickness_mm"  # a case's border-core labels record the ring they were made with


@dataclass(frozen=True)
class PreprocessingSettings:
    """What preprocessing needs from a plan (all in the transposed axis order except ``transpose_forward``)."""

    transpose_forward: list[int]
    target_spacing: list[float]  # 2 entries for 2d (the slice axis keeps its spacing), 3 for 3d
    normalization_schemes: list[str]
    use_mask_for_norm: list[bool]
    intensity_properties: Mapping[str, Mapping[str, float]]
    force_separate_z: bool | None = None
    order_data: int = 3
    order_z_data: int = 0
    foreground_classes: list[int | tuple[int, ...]] = field(default_factory=list)
    instances: InstancePlan | None = None  # the label maps are instance maps: border-core at the target spacing


@dataclass
class PreprocessedCase:
    data: np.ndarray  # float32 (c, z, y, x)
    seg: np.ndarray | None  # int8/int16 (1, z, y, x); -1 outside the non-zero mask
    properties: dict[str, Any]
    class_locations: dict[str, np.ndarray]


def sample_class_locations(seg: np.ndarray, classes: Sequence[int | tuple[int, ...]],
                           seed: int = CLASS_LOCATION_SEED) -> dict[str, np.ndarray]:
    """Up to 10000 voxel coordinates per class (at least 1 % of its voxels), seeded as in nnU-Net.

    Keys are the class value as text ("2", or "1,2,3" for a region); values are ``(n, 4)`` int arrays of
    ``(channel, z, y, x)`` indices into ``seg``.
    """
    rng = np.random.RandomState(seed)
    locations = {}
    for cls in classes:
        values = cls if isinstance(cls, tuple) else (cls,)
        all_locations = np.argwhere(np.isin(seg, values))
        key = ",".join(str(v) for v in values)
        if len(all_locations) == 0:
            locations[key] = np.zeros((0, seg.ndim), np.int32)
            continue
        n = max(min(CLASS_LOCATION_SAMPLES, len(all_locations)),
                int(np.ceil(len(all_locations) * CLASS_LOCATION_MIN_FRACTION)))
        locations[key] = all_locations[rng.choice(len(all_locations), n, replace=False)].astype(np.int32)
    return locations


def preprocess_case(data: np.ndarray, seg: np.ndarray | None, spacing: Sequence[float],
                    settings: PreprocessingSettings) -> PreprocessedCase:
    """Preprocess ``(c, z, y, x)`` images (and a ``(1, z, y, x)`` label map for training cases)."""
    transpose = [0, *[a + 1 for a in settings.transpose_forward]]
    data = data.astype(np.float32).transpose(transpose)
    has_seg = seg is not None
    seg = seg.transpose(transpose) if seg is not None else np.zeros((1, *data.shape[1:]), np.int8)
    current_spacing = [float(spacing[a]) for a in settings.transpose_forward]
    shape_before_cropping = list(data.shape[1:])
    data, seg, bbox = crop_to_nonzero(data, seg.astype(np.int32 if settings.instances else np.int16))
    target = list(settings.target_spacing)
    if len(target) < len(current_spacing):  # 2d: the slice axis keeps its spacing
        target = [current_spacing[0], *target]
    new_shape = compute_new_shape(data.shape[1:], current_spacing, target)
    shape_after_cropping = list(data.shape[1:])
    data = normalize(data, seg, settings.normalization_schemes, settings.use_mask_for_norm,
                     settings.intensity_properties)  # before resampling, so the mask still fits the image
    data = resample_image(data, new_shape, current_spacing, target, settings.order_data, settings.order_z_data,
                          settings.force_separate_z)
    if settings.instances is not None and has_seg:  # object ids are not interpolated; the ring is physical
        seg = border_core(resample_nearest(seg, new_shape)[0], target, settings.instances.border_thickness_mm)[None]
    else:
        seg = resample_segmentation(seg, new_shape, current_spacing, target, settings.force_separate_z)
    seg = seg.astype(np.int16 if seg.max() > 127 else np.int8)
    class_locations = sample_class_locations(seg, settings.foreground_classes) if has_seg else {}
    properties = {
        "spacing": current_spacing,
        "target_spacing": target,
        "shape_before_cropping": shape_before_cropping,
        "bbox_used_for_cropping": [list(b) for b in bbox],
        "shape_after_cropping_and_before_resampling": shape_after_cropping,
        "shape_after_resampling": list(data.shape[1:]),
        **({BORDER_THICKNESS_KEY: settings.instances.border_thickness_mm}
           if settings.instances is not None and has_seg else {}),
    }
    return PreprocessedCase(data, seg if has_seg else None, properties, class_locations)
