"""nnU-Net's planning rules that do not involve the network: spacing, transpose, normalization, resampling."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnlight.fingerprint import Fingerprint

# spacings and shapes come as lists (plans, configs) or as numpy arrays (statistics of the fingerprint)
Numbers = Sequence[float] | np.ndarray

NORMALIZATION_BY_CHANNEL_NAME = {
    "ct": "CTNormalization",
    "nonorm": "NoNormalization",
    "zscore": "ZScoreNormalization",
    "rescale_to_0_1": "RescaleTo01Normalization",
    "rgb_to_0_1": "RGBTo01Normalization",
}
DEFAULT_NORMALIZATION = "ZScoreNormalization"
# Only z-score leaves voxels outside the mask at zero, so only it can use the non-zero mask.
MASKABLE_NORMALIZATIONS = ("ZScoreNormalization",)


def compute_new_shape(old_shape: Sequence[int], old_spacing: Numbers, new_spacing: Numbers) -> list[int]:
    """The shape of an image resampled from ``old_spacing`` to ``new_spacing`` (planning and preprocessing)."""
    return [round(s * o / n) for s, o, n in zip(old_shape, old_spacing, new_spacing, strict=True)]
# A case's peak memory while preprocessed, calibrated on 200x512x512 CT cases (BENCHMARKS.md, preprocessing
# memory; 3.1 GB measured for 52 M voxels resampled to 47 M, 2.4 GB to 8 M): a worker's interpreter with torch and
# SimpleITK, then bytes per voxel before resampling (per channel: the image as read, its copy and its normalized
# copy; once: float64 copies of one channel for the spline, the labels and their indicator) and per voxel after
# (per channel: the float32 result; once: one channel's float64 result, the label resampling's scores), with a margin.
PREPROCESSING_BASE_BYTES = 2**29
PREPROCESSING_BYTES_PER_VOXEL_BEFORE = (26, 12)  # (once, per channel)
PREPROCESSING_BYTES_PER_VOXEL_AFTER = (9, 8)
PREPROCESSING_MARGIN = 1.15


def preprocessing_peak_bytes(voxels_before: float, voxels_after: float, channels: int) -> int:
    """Estimated peak memory of preprocessing one case of ``voxels_before`` voxels (cropped, per channel) that
    resampling turns into ``voxels_after``: what lets preprocessing run as many cases side by side as fit."""
    before, after = PREPROCESSING_BYTES_PER_VOXEL_BEFORE, PREPROCESSING_BYTES_PER_VOXEL_AFTER
    need = voxels_before * (before[0] + before[1] * channels) + voxels_after * (after[0] + after[1] * channels)
    return int(PREPROCESSING_MARGIN * (PREPROCESSING_BASE_BYTES + need))


def case_preprocessing_bytes(shape: Sequence[int], spacing: Numbers, target_spacing: Numbers, channels: int
                             ) -> tuple[list[int], int]:
    """The shape a case of ``shape`` (cropped) at ``spacing`` takes at ``target_spacing`` (same axis order), and
    its estimated peak memory while preprocessed (:func:`preprocessing_peak_bytes`)."""
    resampled = compute_new_shape(shape, spacing, target_spacing)
    return resampled, preprocessing_peak_bytes(float(np.prod(shape, dtype=np.float64)),
                                               float(np.prod(resampled, dtype=np.float64)), channels)


USE_MASK_RELATIVE_SIZE_THRESHOLD = 3 / 4

RESAMPLING_DATA = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
RESAMPLING_SEG = {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None}
RESAMPLING_PROBABILITIES = {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None}


def fullres_target_spacing(fingerprint: Fingerprint, anisotropy_threshold: float = 3.0
                           ) -> tuple[np.ndarray, str | None]:
    """Median spacing, except the 10th percentile on a much coarser axis that also has far fewer voxels.

    Returns the spacing (fingerprint axis order) and a human-readable reason when the anisotropy rule fired.
    """
    spacings = np.vstack(fingerprint.spacings)
    target = np.percentile(spacings, 50, axis=0)
    target_size = np.percentile(np.vstack(fingerprint.shapes_after_crop), 50, axis=0)
    worst = int(np.argmax(target))
    others = [i for i in range(len(target)) if i != worst]
    other_spacings = [target[i] for i in others]
    aniso_spacing = target[worst] > anisotropy_threshold * max(other_spacings)
    aniso_voxels = target_size[worst] * anisotropy_threshold < min(target_size[i] for i in others)
    if not (aniso_spacing and aniso_voxels):
        return target, None
    median = float(target[worst])
    tenth = float(np.percentile(spacings[:, worst], 10))
    if tenth < max(other_spacings):
        tenth = max(max(other_spacings), tenth) + 1e-5
    target[worst] = tenth
    if tenth == median:
        return target, None
    return target, (f"axis {worst} spacing {tenth:.4g} = 10th percentile instead of median {median:.4g}: "
                    f"anisotropic (>{anisotropy_threshold:g}x coarser, <1/{anisotropy_threshold:g} the voxels)")


def transpose_axes(target_spacing: Numbers, suppress: bool = False) -> tuple[list[int], list[int]]:
    """Move the coarsest axis first, so 2D slices are the fine-resolution planes."""
    if suppress:
        return [0, 1, 2], [0, 1, 2]
    coarsest = int(np.argmax(target_spacing))
    forward = [coarsest] + [i for i in range(3) if i != coarsest]
    backward = [forward.index(i) for i in range(3)]
    return forward, backward


def normalization_schemes(channel_names: Sequence[str], median_relative_size_after_cropping: float,
                          force_use_mask: bool = False) -> tuple[list[str], list[bool]]:
    """Scheme per channel from its name (case-insensitive); anything unknown is z-scored.

    The non-zero mask is used for z-score channels when cropping removed a lot (median relative size
    after cropping < 3/4), i.e. when the image has a large zero background such as brain MRI.
    """
    schemes = [NORMALIZATION_BY_CHANNEL_NAME.get(name.casefold(), DEFAULT_NORMALIZATION) for name in channel_names]
    use_mask = force_use_mask or median_relative_size_after_cropping < USE_MASK_RELATIVE_SIZE_THRESHOLD
    return schemes, [use_mask and s in MASKABLE_NORMALIZATIONS for s in schemes]
