"""Sliding-window prediction with Gaussian importance weighting and mirroring test-time augmentation.

Tiles of the training patch size are placed with a step of ``step_size`` x tile (0.5 by default) so the
whole image is covered; each tile's logits are weighted by a Gaussian (sigma = tile / 8) that trusts the
tile centre over its border, and the weighted sum is divided by the summed weights (nnU-Net's scheme).
"""

from __future__ import annotations

import functools
import itertools
import math
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


def tile_count(image_size: Sequence[int], tile_size: Sequence[int], step_size: float) -> int:
    """How many tiles cover an image of ``image_size`` (spatial; a 2D tile on a 3D image: one per slice)."""
    if len(tile_size) == len(image_size) - 1:
        tile_size = [1, *tile_size]
    padded = [max(s, t) for s, t in zip(image_size, tile_size, strict=True)]
    return math.prod(len(steps) for steps in window_steps(padded, tile_size, step_size))


@functools.lru_cache(maxsize=8)
def _importance(tile_size: tuple[int, ...], use_gaussian: bool) -> torch.Tensor:
    """The tile weights, computed once per tile size (a 3D Gaussian filter takes longer than a small image's
    forward pass). Read only: callers add it, never change it."""
    return torch.from_numpy(gaussian_importance(tile_size)) if use_gaussian else torch.ones(tile_size)


class _Accumulator:
    """One image's padded input, and its weighted scores and summed weights while its tiles come back. An image
    smaller than the tile is padded for the network, but its scores cover the image alone: a CT of 34 slices under a
    64-slice tile would otherwise hold every class on 64 slices."""

    def __init__(self, image: torch.Tensor, tile_size: Sequence[int], num_classes: int,
                 scores_dtype: torch.dtype) -> None:
        self.size = list(image.shape[1:])
        self.padded_size = [max(s, t) for s, t in zip(self.size, tile_size, strict=True)]
        self.pad_before = [(p - s) // 2 for p, s in zip(self.padded_size, self.size, strict=True)]
        if self.padded_size != self.size:
            pad = []
            for before, p, s in reversed(list(zip(self.pad_before, self.padded_size, self.size, strict=True))):
                pad += [before, p - s - before]
            image = F.pad(image, pad)
        self.image = image
        self.logits = torch.zeros((num_classes, *self.size), device=image.device, dtype=scores_dtype)
        self.running_mean = scores_dtype != torch.float32  # float32 sums as nnU-Net does, then divides once
        self.weight_sum = torch.zeros(self.size, device=image.device)

    def add(self, tile: tuple[slice, ...], prediction: torch.Tensor, weights: torch.Tensor) -> None:
        """Add a tile (placed on the padded image) where it covers the image itself."""
        inside, of_tile = [], []
        for placed, before, size in zip(tile, self.pad_before, self.size, strict=True):
            start, stop = placed.start - before, placed.stop - before
            inside.append(slice(max(start, 0), min(stop, size)))
            of_tile.append(slice(max(start, 0) - start, min(stop, size) - start))
        target, part, weights = tuple(inside), tuple(of_tile), weights[tuple(of_tile)]
        self.weight_sum[target] += weights
        if self.running_mean:  # the weighted mean so far: as large as the scores, never below float16's range
            current = self.logits[(slice(None), *target)]
            current += ((prediction[(slice(None), *part)] - current.float())
                        * (weights / self.weight_sum[target])).to(self.logits.dtype)
        else:
            self.logits[(slice(None), *target)].addcmul_(prediction[(slice(None), *part)], weights)  # no temporary

    def result(self) -> torch.Tensor:
        if not self.running_mean:
            self.logits /= self.weight_sum
        return self.logits


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
    return sliding_window_predict_many(network, [image], tile_size, num_classes, step_size, use_gaussian,
                                       mirror_axes, tile_batch, network_device, autocast_dtype, scores_dtype)[0]


@torch.no_grad()
def sliding_window_predict_many(network: Network, images: Sequence[torch.Tensor], tile_size: Sequence[int],
                                num_classes: int, step_size: float = 0.5, use_gaussian: bool = True,
                                mirror_axes: Sequence[int] = (), tile_batch: int = 1,
                                network_device: torch.device | None = None,
                                autocast_dtype: torch.dtype | None = None,
                                scores_dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """:func:`sliding_window_predict` for several images at once: their tiles share forward passes
    (``tile_batch`` tiles each), so images smaller than a tile fill a GPU's batch instead of running alone. Each
    image's scores are what it gets alone (the tiles and their weights are the same)."""
    slice_by_slice = len(tile_size) == images[0].ndim - 2
    if slice_by_slice:
        tile_size = [1, *tile_size]
    accumulators = [_Accumulator(image, tile_size, num_classes, scores_dtype) for image in images]
    weights = _importance(tuple(tile_size), use_gaussian).to(images[0].device)
    device = network_device or images[0].device
    tiles = ((accumulator, tile) for accumulator in accumulators
             for tile in _tiles(accumulator.padded_size, tile_size, step_size))
    while batch := list(itertools.islice(tiles, tile_batch)):
        stacked = torch.stack([a.image[(slice(None), *s)] for a, s in batch]).to(device, non_blocking=True)
        if slice_by_slice:
            stacked = stacked[:, :, 0]
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
            predicted = _mirrored_predict(network, stacked, mirror_axes)
        if slice_by_slice:
            predicted = predicted[:, :, None]
        for (accumulator, tile), prediction in zip(batch, predicted, strict=True):
            accumulator.add(tile, prediction.to(accumulator.logits.device), weights)
    return [accumulator.result() for accumulator in accumulators]
