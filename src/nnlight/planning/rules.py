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
