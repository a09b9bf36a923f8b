"""The cascade's extra input: the low-resolution stage's segmentation as one-hot channels, and nnU-Net's
augmentation of them (so the full-resolution stage learns to correct, not copy, the low-res prediction).

nnU-Net 2.8.1 (``nnUNetTrainer.get_training_transforms`` with ``is_cascaded``, batchgeneratorsv2): the previous
segmentation travels with the labels through the spatial transforms, becomes one-hot channels over the
foreground labels after the intensity transforms, then per sample: with probability 0.4 a random binary
operator (dilation, erosion, opening, closing; ball of radius U(1, 8)) on each channel with probability 0.5,
in random order, voxels a dilation adds leaving the other channels; with probability 0.2 one random connected
component (full connectivity, smaller than 15 % of the patch) removed from each channel with probability 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import label as connected_components

P_BINARY_OPERATOR = 0.4
P_REMOVE_COMPONENT = 0.2
P_PER_LABEL = 0.5
STREL_RADIUS = (1.0, 8.0)
MAX_COMPONENT_SHARE = 0.15
_CONV = {2: F.conv2d, 3: F.conv3d}


def one_hot_previous(segmentation: torch.Tensor, labels: Sequence[int]) -> torch.Tensor:
    """``(b, 1, *spatial)`` label maps → ``(b, len(labels), *spatial)`` float one-hot (background and -1: none)."""
    return torch.cat([(segmentation == value).float() for value in labels], dim=1)


def structuring_element(radius: float, dim: int) -> torch.Tensor:
    """skimage's ``disk`` (2D) / ``ball`` (3D) for a possibly fractional radius, as batchgeneratorsv2 draws it."""
    axis = torch.arange(-radius, radius + 1) if dim == 2 else torch.linspace(-radius, radius, int(2 * radius + 1))
    grids = torch.meshgrid([axis] * dim, indexing="ij")
    return torch.stack([g**2 for g in grids]).sum(0) <= radius**2


def _dilate(mask: torch.Tensor, strel: torch.Tensor) -> torch.Tensor:
    """Voxels the element, centred on a set voxel, reaches ("same" size; an even element reaches one more
    voxel towards the lower end)."""
    kernel = strel.to(mask.device, torch.float32)[None, None]
    padding = [p for k in reversed(strel.shape) for p in ((k - 1) // 2, k - 1 - (k - 1) // 2)]
    return _CONV[mask.ndim](F.pad(mask.float()[None, None], padding), kernel)[0, 0].round() > 0


def _erode(mask: torch.Tensor, strel: torch.Tensor) -> torch.Tensor:
    return ~_dilate(~mask, strel)


OPERATORS = (
    _dilate,
    _erode,
    lambda m, s: _erode(_dilate(m, s), s),  # closing
    lambda m, s: _dilate(_erode(m, s), s),  # opening
)


def _uniform(g: torch.Generator, device: torch.device) -> float:
    return float(torch.rand((), generator=g, device=device))


def augment_previous_stage(channels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """nnU-Net's cascade augmentation of ``(b, labels, *spatial)`` one-hot channels (in place, returned)."""
    device, dim = channels.device, channels.ndim - 2
    for sample in channels:
        if _uniform(g, device) < P_BINARY_OPERATOR:
            order = torch.randperm(len(sample), generator=g, device=device).tolist()
            for c in [c for c in order if _uniform(g, device) < P_PER_LABEL]:
                operator = OPERATORS[int(torch.randint(len(OPERATORS), (), generator=g, device=device))]
                radius = STREL_RADIUS[0] + _uniform(g, device) * (STREL_RADIUS[1] - STREL_RADIUS[0])
                before = sample[c] > 0
                after = operator(before, structuring_element(radius, dim))
                added = after & ~before
                for other in range(len(sample)):
                    if other != c:
                        sample[other][added] = 0
                sample[c] = after.float()
        if _uniform(g, device) < P_REMOVE_COMPONENT:
            order = torch.randperm(len(sample), generator=g, device=device).tolist()
            for c in [c for c in order if _uniform(g, device) < P_PER_LABEL]:
                _remove_random_component(sample[c], g)
    return channels


def _remove_random_component(channel: torch.Tensor, g: torch.Generator) -> None:
    mask = (channel > 0).cpu().numpy()
    if not mask.any():
        return
    components, _ = connected_components(mask, structure=np.ones((3,) * mask.ndim))
    sizes = np.bincount(components.ravel())[1:]
    small = np.flatnonzero(sizes < mask.size * MAX_COMPONENT_SHARE) + 1
    if len(small):
        chosen = int(small[int(torch.randint(len(small), (), generator=g, device=channel.device))])
        channel[torch.from_numpy(components == chosen).to(channel.device)] = 0
