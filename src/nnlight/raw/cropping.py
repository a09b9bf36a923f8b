"""Crop to the non-zero region, as nnU-Net does before fingerprinting and preprocessing."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_fill_holes

OUTSIDE_MASK_LABEL = -1


def nonzero_mask(data: np.ndarray) -> np.ndarray:
    """Voxels where any channel is non-zero, with holes filled (so dark tissue inside the body stays in)."""
    return binary_fill_holes(np.any(data != 0, axis=0))


def bounding_box(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open ``[start, stop)`` per axis of the True voxels; the full extent if there are none."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(np.any(mask, axis=other))
        box.append((int(hits[0]), int(hits[-1]) + 1) if hits.size else (0, mask.shape[axis]))
    return box


def crop_to_nonzero(data: np.ndarray, seg: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Crop ``(c, ...)`` data and seg to the non-zero bounding box.

    Background voxels outside the non-zero mask get label -1, which training maps back to 0 and
    which z-score normalization with ``use_mask_for_norm`` uses as the mask.
    """
    mask = nonzero_mask(data)
    box = bounding_box(mask)
    slicer = tuple(slice(a, b) for a, b in box)
    data = data[(slice(None), *slicer)]
    seg = seg[(slice(None), *slicer)].copy()
    mask = mask[slicer][None]
    if not np.issubdtype(seg.dtype, np.signedinteger) and not np.issubdtype(seg.dtype, np.floating):
        seg = seg.astype(np.int16)
    seg[(seg == 0) & ~mask] = OUTSIDE_MASK_LABEL
    return data, seg, box
