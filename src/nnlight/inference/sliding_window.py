"""Sliding-window prediction with Gaussian importance weighting and mirroring test-time augmentation.

Tiles of the training patch size are placed with a step of ``step_size`` x tile (0.5 by default) so the
whole image is covered; each tile's logits are weighted by a Gaussian (sigma = tile / 8) that trusts the
tile centre over its border, and the weighted sum is divided by the summed weights (nnU-Net's scheme).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

Network = Callable[[torch.Tensor], torch.Tensor]


def window_steps(image_size: Sequence[int], tile_size: Sequence[int], step_size: float) -> list[list[int]]:
    """Start positions per axis: as few tiles as the step allows, spread evenly from edge to edge."""
    steps = []
    for size, tile in zip(image_size, tile_size, strict=True):
        count = int(np.ceil((size - tile) / (tile * step_size))) + 1
        stride = (size - tile) / (count - 1) if count > 1 else 0
        steps.append([int(np.round(stride * i)) for i in range(count)])
    return steps


def gaussian_importance(tile_size: Sequence[int], sigma_scale: float = 1 / 8, peak: float = 10.0) -> np.ndarray:
    """A Gaussian over the tile (no zeros, so every voxel keeps some weight)."""
    impulse = np.zeros(tile_size, np.float64)
    impulse[tuple(t // 2 for t in tile_size)] = 1
    weights = gaussian_filter(impulse, [t * sigma_scale for t in tile_size], 0, mode="constant", cval=0)
    weights = weights / weights.max() * peak
    weights[weights == 0] = weights[weights != 0].min()
    return weights.astype(np.float32)


def _mirrored_predict(network: Network, tiles: torch.Tensor, mirror_axes: Sequence[int]) -> torch.Tensor:
    """Mean of the float32 predictions over every combination of flipped spatial axes (2^n passes)."""
    dims = [a + 2 for a in mirror_axes]
    combos = [c for n in range(1, len(dims) + 1) for c in itertools.combinations(dims, n)]
    prediction = network(tiles).float()
    for axes in combos:
        prediction += torch.flip(network(torch.flip(tiles, axes)), axes).float()
    return prediction / (len(combos) + 1)


def _tiles(image_size: Sequence[int], tile_size: Sequence[int], step_size: float) -> Iterator[tuple[slice, ...]]:
    for start in itertools.product(*window_steps(image_size, tile_size, step_size)):
        yield tuple(slice(s, s + t) for s, t in zip(start, tile_size, strict=True))


@torch.no_grad()
def sliding_window_predict(network: Network, image: torch.Tensor, tile_size: Sequence[int], num_classes: int,
                           step_size: float = 0.5, use_gaussian: bool = True, mirror_axes: Sequence[int] = (),
                           tile_batch: int = 1, network_device: torch.device | None = None,
                           autocast_dtype: torch.dtype | None = None,
                           scores_dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Logits ``(num_classes, *spatial)`` for an image ``(c, *spatial)``, accumulated on ``image``'s device.

    Tiles go through the network on ``network_device`` (default: the image's device), ``tile_batch`` at a time,
    so a GPU network can fill a CPU accumulator when the whole image does not fit in GPU memory. With
    ``autocast_dtype`` (float16/bfloat16) the network runs in mixed precision. The scores are held in
    ``scores_dtype``: float32 (Gaussian-weighted sums divided by the summed weights at the end, nnU-Net's scheme), or
    float16/bfloat16 to halve the memory of a many-class image, then as a running weighted mean (the tiny weights
    of a tile's corner would vanish below float16's range in a sum). A 2D tile on a 3D image (a 2d configuration)
    predicts slice by slice along the first axis.
    """
    slice_by_slice = len(tile_size) == image.ndim - 2
    if slice_by_slice:
        tile_size = [1, *tile_size]
    spatial = list(image.shape[1:])
    padded_size = [max(s, t) for s, t in zip(spatial, tile_size, strict=True)]
    pad_before = [(p - s) // 2 for p, s in zip(padded_size, spatial, strict=True)]
    if padded_size != spatial:
        pad = []
        for before, p, s in reversed(list(zip(pad_before, padded_size, spatial, strict=True))):
            pad += [before, p - s - before]
        image = F.pad(image, pad)
    weights = torch.from_numpy(gaussian_importance(tile_size)) if use_gaussian else torch.ones(tile_size)
    weights = weights.to(image.device)
    logits = torch.zeros((num_classes, *padded_size), device=image.device, dtype=scores_dtype)
    running_mean = scores_dtype != torch.float32  # float32 sums as nnU-Net does, then divides once
    weight_sum = torch.zeros(padded_size, device=image.device)

    device = network_device or image.device

    def run(batch: list[tuple[slice, ...]]) -> None:
        tiles = torch.stack([image[(slice(None), *s)] for s in batch]).to(device, non_blocking=True)
        if slice_by_slice:
            tiles = tiles[:, :, 0]
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            predicted = _mirrored_predict(network, tiles, mirror_axes)
        predicted = predicted.to(logits.device)
        if slice_by_slice:
            predicted = predicted[:, :, None]
        for s, p in zip(batch, predicted, strict=True):
            weight_sum[s] += weights
            if running_mean:  # the weighted mean so far: as large as the scores, never below float16's range
                current = logits[(slice(None), *s)]
                current += ((p - current.float()) * (weights / weight_sum[s])).to(scores_dtype)
            else:
                logits[(slice(None), *s)] += p * weights

    batch: list[tuple[slice, ...]] = []
    for tile in _tiles(padded_size, tile_size, step_size):
        batch.append(tile)
        if len(batch) == tile_batch:
            run(batch)
            batch = []
    if batch:
        run(batch)
    if not running_mean:
        logits /= weight_sum
    crop = tuple(slice(b, b + s) for b, s in zip(pad_before, spatial, strict=True))
    return logits[(slice(None), *crop)]
