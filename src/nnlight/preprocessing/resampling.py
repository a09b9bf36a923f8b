"""Resampling images and segmentations to a target spacing, with nnU-Net's separate-z rule.

Images: cubic spline (order 3) in-plane; along a single much coarser axis nearest neighbour
(order_z 0), as nnU-Net does when max/min spacing > 3. Segmentations: each label resampled as a
one-hot mask with linear interpolation and thresholded at 0.5 (nnU-Net's ``resize_segmentation``).
Coordinates follow skimage's ``resize`` (pixel centres, edge values repeated), which nnU-Net uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import zoom

ANISOTROPY_THRESHOLD = 3.0


def separate_z_axis(current_spacing: Sequence[float], new_spacing: Sequence[float],
                    force_separate_z: bool | None = None, threshold: float = ANISOTROPY_THRESHOLD) -> int | None:
    """The single low-resolution axis to resample separately, or None (nnU-Net's rule)."""
    def lowres_axes(spacing: Sequence[float]) -> list[int]:
        return [i for i, s in enumerate(spacing) if max(spacing) / s == 1]

    if force_separate_z is not None:
        axes = lowres_axes(current_spacing) if force_separate_z else []
    elif max(current_spacing) / min(current_spacing) > threshold:
        axes = lowres_axes(current_spacing)
    elif max(new_spacing) / min(new_spacing) > threshold:
        axes = lowres_axes(new_spacing)
    else:
        axes = []
    return axes[0] if len(axes) == 1 else None  # two or three tied axes: no separate z


def _nearest_along(volume: np.ndarray, axis: int, new_size: int) -> np.ndarray:
    """Order-0 resize along one axis with pixel-centre coordinates (what map_coordinates(order=0) picks)."""
    old_size = volume.shape[axis]
    coords = (np.arange(new_size) + 0.5) * (old_size / new_size) - 0.5
    index = np.clip(np.floor(coords + 0.5).astype(int), 0, old_size - 1)
    return np.take(volume, index, axis=axis)


def _resize_spline(image: np.ndarray, new_shape: Sequence[int], order: int, out: np.ndarray | None = None
                   ) -> np.ndarray:
    """skimage's ``resize(mode="edge", anti_aliasing=False)``: spline zoom, clipped to the input range; in float64,
    or into ``out`` (float32). zoom filters and interpolates in float64 whatever its input and output types, and the
    clip bounds are values of the input, so float32 output holds exactly the float64 result cast to float32 —
    without the float64 copies of the input and the output (a fifth of a case's preprocessing time went to the
    kernel providing their fresh pages)."""
    factors = [n / o for n, o in zip(new_shape, image.shape, strict=True)]
    resized = zoom(image, factors, order=order, mode="nearest", grid_mode=True,
                   output=np.float64 if out is None else out)
    return np.clip(resized, image.min(), image.max(), out=resized)


def resample_image(data: np.ndarray, new_shape: Sequence[int], current_spacing: Sequence[float],
                   new_spacing: Sequence[float], order: int = 3, order_z: int = 0,
                   force_separate_z: bool | None = None) -> np.ndarray:
    """Resample ``(c, *spatial)`` float data to ``new_shape``; returns float32."""
    new_shape = [int(s) for s in new_shape]
    if list(data.shape[1:]) == new_shape:
        return data.astype(np.float32, copy=False)
    axis = separate_z_axis(current_spacing, new_spacing, force_separate_z) if data.ndim == 4 else None
    out = np.empty((data.shape[0], *new_shape), np.float32)
    for c in range(data.shape[0]):
        if axis is None:
            _resize_spline(data[c], new_shape, order, out=out[c])
            continue
        in_plane = [s for i, s in enumerate(new_shape) if i != axis]
        # in-plane first, each slice (float32 where the slices are only copied across the coarse axis afterwards)
        slices = [_resize_spline(np.take(data[c], k, axis=axis), in_plane, order,
                                 out=None if order_z != 0 else np.empty(in_plane, np.float32))
                  for k in range(data.shape[1 + axis])]
        stacked = np.stack(slices, axis=axis)
        if order_z != 0:
            factors = [n / o for n, o in zip(new_shape, stacked.shape, strict=True)]
            out[c] = zoom(stacked, factors, order=order_z, mode="nearest", grid_mode=True)
        else:
            out[c] = _nearest_along(stacked, axis, new_shape[axis])
    return out


def resample_segmentation(seg: np.ndarray, new_shape: Sequence[int], current_spacing: Sequence[float],
                          new_spacing: Sequence[float], force_separate_z: bool | None = None) -> np.ndarray:
    """Resample a ``(1, *spatial)`` label map (values may include -1) per label, one-hot linear + threshold.

    Linear interpolation of one-hot masks equals ``F.interpolate`` with ``align_corners=False``, which is
    exact and multi-threaded, so torch does it (in-plane bilinear + nearest across the coarse axis when
    the separate-z rule applies).
    """
    new_shape = [int(s) for s in new_shape]
    if list(seg.shape[1:]) == new_shape:
        return seg
    spatial = seg[0]
    axis = separate_z_axis(current_spacing, new_spacing, force_separate_z) if spatial.ndim == 3 else None
    if axis is not None:
        in_plane = [s for i, s in enumerate(new_shape) if i != axis]
        moved = np.moveaxis(spatial, axis, 0)  # (slices, a, b): resample each slice in-plane
        resized = _resize_labels(moved, in_plane, batch_first=True)
        resized = _nearest_along(np.moveaxis(resized, 0, axis), axis, new_shape[axis])
    else:
        resized = _resize_labels(spatial, new_shape, batch_first=False)
    return resized[None]


def resample_nearest(seg: np.ndarray, new_shape: Sequence[int]) -> np.ndarray:
    """A ``(1, *spatial)`` map resized by nearest neighbour: instance ids, which must not be interpolated."""
    new_shape = [int(s) for s in new_shape]
    return seg if list(seg.shape[1:]) == new_shape else _nearest_resize(seg, new_shape, 1)


def _nearest_resize(labels: np.ndarray, new_shape: Sequence[int], first_axis: int) -> np.ndarray:
    for axis in range(first_axis, labels.ndim):
        labels = _nearest_along(labels, axis, new_shape[axis - first_axis])
    return labels


def _resize_labels(labels: np.ndarray, new_shape: Sequence[int], batch_first: bool) -> np.ndarray:
    """Per-label linear interpolation of the indicator masks, then the per-voxel argmax.

    As nnU-Net 2.8.1's ``resize_segmentation`` (batchgenerators 0.25): an exact tie goes to the nearest
    neighbour's label when it is among the tied ones, else to the smallest tied label. float64 keeps the
    ties exact. Every label reuses the same buffers: a fresh output-sized float64 array per label and step made
    the kernel zero gigabytes of new pages per case, as much system time as the interpolation's own CPU time.
    """
    first_axis = 1 if batch_first else 0
    nearest = torch.from_numpy(np.ascontiguousarray(_nearest_resize(labels, new_shape, first_axis)))
    tensor = torch.from_numpy(np.ascontiguousarray(labels))
    spatial_in = (tensor if batch_first else tensor[None])[:, None]  # (N, 1, *spatial)
    nearest = (nearest if batch_first else nearest[None])[:, None]
    interpolate = torch.ops.aten.upsample_bilinear2d.out if len(new_shape) == 2 else \
        torch.ops.aten.upsample_trilinear3d.out  # F.interpolate(align_corners=False), into a given tensor
    is_label = torch.empty(spatial_in.shape, dtype=torch.bool)
    indicator = torch.empty(spatial_in.shape, dtype=torch.float64)
    score, best, nearest_score = (torch.empty(nearest.shape, dtype=torch.float64) for _ in range(3))
    winner = torch.empty_like(nearest)
    better, is_nearest = (torch.empty(nearest.shape, dtype=torch.bool) for _ in range(2))
    for i, value in enumerate(torch.unique(tensor).tolist()):
        indicator.copy_(torch.eq(spatial_in, value, out=is_label))
        interpolate(indicator, list(new_shape), False, out=score)
        torch.eq(nearest, value, out=is_nearest)
        if i == 0:
            best.copy_(score)
            winner.fill_(value)
            torch.mul(best, is_nearest, out=nearest_score)
            continue
        torch.gt(score, best, out=better)
        winner.masked_fill_(better, value)
        torch.maximum(best, score, out=best)
        torch.where(is_nearest, score, nearest_score, out=nearest_score)
    tie_with_nearest = torch.eq(nearest_score, best, out=better).logical_and_(best > 0)
    winner = torch.where(tie_with_nearest, nearest, winner, out=winner)[:, 0]
    return (winner if batch_first else winner[0]).numpy()


def resample_logits(logits: torch.Tensor, new_shape: Sequence[int], current_spacing: Sequence[float],
                    new_spacing: Sequence[float]) -> torch.Tensor:
    """Linear resampling of ``(c, *spatial)`` logits for export (nnU-Net's order 1, order_z 0, separate-z rule).

    Linear interpolation with pixel-centre coordinates is exactly what ``F.interpolate(align_corners=False)``
    computes, so this runs in torch, on the logits' device.
    """
    new_shape = [int(s) for s in new_shape]
    if list(logits.shape[1:]) == new_shape:
        return logits
    axis = separate_z_axis(current_spacing, new_spacing) if logits.ndim == 4 else None
    if axis is None:
        mode = "bilinear" if logits.ndim == 3 else "trilinear"
        return F.interpolate(logits[None].float(), size=new_shape, mode=mode, align_corners=False)[0]
    in_plane = [s for i, s in enumerate(new_shape) if i != axis]
    slabs = logits.movedim(axis + 1, 0).float()  # (slices, c, a, b)
    resized = F.interpolate(slabs, size=in_plane, mode="bilinear", align_corners=False).movedim(0, axis + 1)
    index = torch.from_numpy(_nearest_along(np.arange(resized.shape[axis + 1]), 0, new_shape[axis]))
    return resized.index_select(axis + 1, index.to(resized.device))
