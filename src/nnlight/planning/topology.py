"""Network topology from spacing and patch size (nnU-Net's ``get_pool_and_conv_props``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Topology:
    pool_per_axis: list[int]
    strides: list[list[int]]  # per stage; the first stage is [1, ...]
    kernel_sizes: list[list[int]]  # per stage, bottleneck included
    patch_size: list[int]  # rounded up to a multiple of ``divisible_by``
    divisible_by: list[int]

    @property
    def n_stages(self) -> int:
        return len(self.strides)


def pad_to_multiple(shape: Sequence[float], divisible_by: Sequence[int]) -> list[int]:
    """Round each axis up to the next multiple of its divisor."""
    return [int(math.ceil(s / d) * d) for s, d in zip(shape, divisible_by, strict=True)]


def get_pool_and_conv_props(spacing: Sequence[float] | np.ndarray, patch_size: Sequence[float],
                            min_feature_map_size: int = 4, max_numpool: int = 999999) -> Topology:
    """Pool every axis whose spacing is within 2x of the finest one while it stays >= 2x the min edge.

    Kernels switch from 1 to 3 (for good) once an axis' spacing is within 2x of the finest; the
    bottleneck always uses 3. A lone axis left to pool needs at least 3x the min edge.
    """
    dim = len(spacing)
    current_spacing = [float(s) for s in spacing]
    current_size = [float(s) for s in patch_size]  # a median shape can be fractional (e.g. 16.5)
    strides = [[1] * dim]
    kernels: list[list[int]] = []
    pool_per_axis = [0] * dim
    kernel = [1] * dim
    while True:
        size_ok = [i for i in range(dim) if current_size[i] >= 2 * min_feature_map_size]
        if not size_ok:
            break
        spacings_of_size_ok = [current_spacing[i] for i in size_ok]
        finest = min(spacings_of_size_ok)
        candidates = [i for i in size_ok if current_spacing[i] / finest < 2 and pool_per_axis[i] < max_numpool]
        if len(candidates) == 1 and current_size[candidates[0]] < 3 * min_feature_map_size:
            break
        if not candidates:
            break
        for d in range(dim):
            # nnU-Net compares the d-th entry of the size-filtered spacing list here (not axis d's own
            # spacing); we keep that so plans match, falling back to axis d where that list is shorter.
            reference = spacings_of_size_ok[d] if d < len(spacings_of_size_ok) else current_spacing[d]
            if kernel[d] != 3 and reference / min(current_spacing) < 2:
                kernel[d] = 3
        stride = [1] * dim
        for axis in candidates:
            stride[axis] = 2
            pool_per_axis[axis] += 1
            current_spacing[axis] *= 2
            current_size[axis] = math.ceil(current_size[axis] / 2)
        strides.append(stride)
        kernels.append(list(kernel))
    divisible_by = [2 ** p for p in pool_per_axis]
    kernels.append([3] * dim)
    return Topology(pool_per_axis, strides, kernels, pad_to_multiple(patch_size, divisible_by), divisible_by)
