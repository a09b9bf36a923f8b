"""nnU-Net's training augmentation as batched torch operations that run on the training device.

CPU workers only read and crop patches (``nnlight.data.sampling``); everything here works on a whole batch
at once, so on a GPU the data pipeline is not the bottleneck it is in nnU-Net (its issue #3063: about 1 s of
CPU per sample). The pipeline is the ordered list ``order`` of stages: nnU-Net's (:data:`BUILT_IN_STAGES`,
their probabilities and ranges in the flat settings) and a user's own transforms (``transforms``: name ->
a checked :class:`~nnlight.data.transforms.BatchTransform` class with its probability ``p``), anywhere after
``spatial``. The default order is ``nnUNetTrainer.get_training_transforms``: spatial (rotation, scaling, centre
crop; labels resampled linearly per label and arg-maxed) → Gaussian noise → Gaussian blur → brightness →
contrast → low resolution → inverted gamma → gamma → mirroring; then always: mask outside → label -1 → 0.
``configs/augmentation/da5.yaml`` switches on nnUNetTrainerDA5's extra stages.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from nnlight.data import transforms as T
from nnlight.preprocessing.resampling import ANISOTROPY_THRESHOLD
from nnlight.utils.components import components
from nnlight.utils.errors import UserError

Range = tuple[float, float]
Interpolation = Literal["linear", "nearest"]
# nnU-Net's stages in nnUNetTrainer's order (DA5's extras last); spatial crops the patch, so it comes first
BUILT_IN_STAGES = ("spatial", "rot90_transpose", "noise", "blur", "additive_brightness", "brightness", "contrast",
                   "low_resolution", "gamma_inverted", "gamma", "mirror", "blank_rectangles", "brightness_gradient",
                   "local_gamma", "sharpen")


@dataclass(frozen=True)
class AugmentationSettings:
    """The ``augmentation`` group: probabilities (per sample unless noted) and ranges; defaults are nnU-Net's."""

    p_rotation: float = 0.2
    rotation_degrees: Range | None = None  # null: nnU-Net's rule from the patch shape (±30° 3D, 2D ±180°/±15°)
    p_rotation_per_axis: float = 1.0  # 3D: each axis' angle is kept with this probability (DA5: 0.5)
    p_scaling: float = 0.2
    scaling: Range = (0.7, 1.4)  # > 1 samples a larger area: objects get smaller (batchgeneratorsv2's convention)
    p_synchronize_scaling: float = 1.0  # one factor for every axis (DA5: 0, a factor per axis)
    dummy_2d: bool | None = None  # rotate/scale in-plane only; null: when the 3D patch is anisotropic (nnU-Net)
    initial_patch_min_scale: float = 0.85  # patches are drawn large enough to zoom out to this (DA5: 0.7)
    image_interpolation: Interpolation = "linear"
    seg_interpolation: Interpolation = "linear"  # nnU-Net: one-hot, linear, arg-max; nnUNetTrainer_DASegOrd0: nearest
    p_rot90: float = 0.0  # DA5: rotate by k·90° among axes of equal patch size
    p_transpose: float = 0.0  # DA5: permute axes of equal patch size
    p_noise: float = 0.1
    noise_variance: Range = (0.0, 0.1)
    p_blur: float = 0.2
    blur_sigma: Range = (0.5, 1.0)
    blur_p_per_channel: float = 0.5
    blur_synchronize_axes: bool = False  # one sigma for every axis (DA5)
    p_median_instead_of_blur: float = 0.0  # DA5: a smoothed sample gets a median filter instead, with this chance
    median_size: tuple[int, int] = (2, 8)  # filter edge drawn from [low, high)
    median_p_per_channel: float = 0.5
    p_additive_brightness: float = 0.0  # DA5: add N(0, sigma)
    additive_brightness_sigma: float = 0.5
    additive_brightness_p_per_channel: float = 0.5
    p_brightness: float = 0.15  # multiplicative
    brightness: Range = (0.75, 1.25)
    p_contrast: float = 0.15
    contrast: Range = (0.75, 1.25)
    contrast_p_per_channel: float = 1.0
    p_contrast_preserve_range: float = 1.0  # DA5: half the contrast changes may leave the original range
    p_low_resolution: float = 0.25
    low_resolution_scale: Range = (0.5, 1.0)
    low_resolution_p_per_channel: float = 0.5
    p_gamma_inverted: float = 0.1
    p_gamma: float = 0.3
    gamma_second_inverted: bool = False  # DA5: the second gamma works on the inverted image too
    gamma: Range = (0.7, 1.5)
    p_mirror: float = 0.5  # per axis
    mirror_axes: tuple[int, ...] = (0, 1, 2)  # axes of the (transposed) 3D image; a 2D configuration sees 1, 2
    p_blank_rectangles: float = 0.0  # DA5
    blank_rectangles: tuple[int, int] = (1, 5)  # how many, from [low, high)
    blank_rectangles_p_per_channel: float = 0.5
    p_brightness_gradient: float = 0.0  # DA5
    p_local_gamma: float = 0.0  # DA5
    local_p_per_channel: float = 0.5
    p_sharpen: float = 0.0  # DA5
    sharpen_strength: Range = (0.1, 1.0)
    sharpen_p_per_channel: float = 0.5
    order: tuple[str, ...] = BUILT_IN_STAGES  # the pipeline: built-in stages and the names of ``transforms``
    transforms: dict[str, Any] = field(default_factory=dict)  # a user's: name -> {_target_: class, p: ..., ...}

    def __post_init__(self) -> None:
        if any(a not in (0, 1, 2) for a in self.mirror_axes):
            raise ValueError(f"mirror_axes={list(self.mirror_axes)}: the axes are 0, 1, 2 (z, y, x of the image)")
        known = (*BUILT_IN_STAGES, *self.transforms)
        unknown = [n for n in self.order if n not in known]
        if unknown:
            raise ValueError(f"order: {', '.join(unknown)} is neither a built-in stage ({', '.join(BUILT_IN_STAGES)}) "
                             "nor a key of augmentation.transforms")
        if len(set(self.order)) != len(self.order) or not self.order or self.order[0] != "spatial":
            raise ValueError(f"order={list(self.order)}: each stage once, starting with spatial (it crops the patch)")
        unused = [n for n in self.transforms if n not in self.order]
        if unused:
            raise ValueError(f"transforms.{unused[0]} is not in order; list it where it should run, e.g. "
                             f"order=[spatial,{unused[0]},noise,...]")
        clashing = [n for n in self.transforms if n in BUILT_IN_STAGES]
        if clashing:
            raise ValueError(f"transforms.{clashing[0]}: the name of a built-in stage; choose another")


@dataclass(frozen=True)
class SpatialAugmentationGeometry:
    """The settings resolved for one patch shape (what nnU-Net's ``configure_rotation_dummyDA_mirroring...``
    computes): rotation range in radians, dummy 2D, the larger patch drawn, mirror axes of the network input."""

    rotation: tuple[float, float]
    dummy_2d: bool
    initial_patch_size: list[int]
    mirror_axes: tuple[int, ...]


def _rotation_matrix(axis: int, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    matrices = {0: [[1, 0, 0], [0, c, -s], [0, s, c]], 1: [[c, 0, s], [0, 1, 0], [-s, 0, c]],
                2: [[c, -s, 0], [s, c, 0], [0, 0, 1]]}
    return np.array(matrices[axis])


def initial_patch_size(patch_size: Sequence[int], rotation: float, scale_min: float = 0.85) -> list[int]:
    """The patch that still covers ``patch_size`` after any rotation up to ``rotation`` (capped at 90°) about
    each axis and zoom-out down to ``scale_min`` (nnU-Net's ``get_patch_size``)."""
    angle = min(abs(rotation), math.pi / 2)
    coords = np.array(patch_size, dtype=float)
    extent = coords.copy()
    if len(coords) == 3:
        for axis in range(3):
            extent = np.maximum(extent, np.abs(coords @ _rotation_matrix(axis, angle)))
    else:
        c, s = math.cos(angle), math.sin(angle)
        extent = np.maximum(extent, np.abs(coords @ np.array([[c, -s], [s, c]])))
    return [int(e) for e in extent / scale_min]


def spatial_augmentation_geometry(patch_size: Sequence[int], settings: AugmentationSettings | None = None
                                  ) -> SpatialAugmentationGeometry:
    """nnU-Net's rules from the patch shape, except where the settings name a rotation range or dummy 2D.

    Without rotation and scaling (nnUNetTrainerNoDA) patches are drawn at the network's patch size.
    """
    s = settings or AugmentationSettings()
    dim = len(patch_size)
    dummy_2d = dim == 3 and (s.dummy_2d if s.dummy_2d is not None
                             else max(patch_size) / patch_size[0] > ANISOTROPY_THRESHOLD)
    if s.rotation_degrees is not None:
        rotation = (math.radians(s.rotation_degrees[0]), math.radians(s.rotation_degrees[1]))
    else:
        degrees = (15.0 if max(patch_size) / min(patch_size) > 1.5 else 180.0) if dim == 2 else \
            (180.0 if dummy_2d else 30.0)
        rotation = (-math.radians(degrees), math.radians(degrees))
    if s.p_rotation == 0 and s.p_scaling == 0:
        initial = [int(p) for p in patch_size]
    else:
        initial = initial_patch_size(patch_size, max(abs(rotation[0]), abs(rotation[1])), s.initial_patch_min_scale)
        if dummy_2d:
            initial[0] = int(patch_size[0])
    axes = tuple(a for a in s.mirror_axes) if dim == 3 else tuple(a - 1 for a in s.mirror_axes if a > 0)
    return SpatialAugmentationGeometry(rotation, dummy_2d, initial, axes if s.p_mirror > 0 else ())


def _rotation(axis: int, angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(b, 3, 3)`` about one axis (numpy axis order)."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    rows = {0: [[one, zero, zero], [zero, c, -s], [zero, s, c]],
            1: [[c, zero, s], [zero, one, zero], [-s, zero, c]],
            2: [[c, -s, zero], [s, c, zero], [zero, zero, one]]}[axis]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def spatial_matrices(batch: int, dim: int, s: AugmentationSettings, geometry: SpatialAugmentationGeometry,
                     g: torch.Generator, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample matrices mapping output voxel offsets to input voxel offsets, and which samples changed."""
    rotate = T.chance(batch, s.p_rotation, g, device)
    scale = T.chance(batch, s.p_scaling, g, device)
    matrices = torch.eye(dim, device=device).repeat(batch, 1, 1)
    if dim == 2 or geometry.dummy_2d:  # dummy 2D: rotate in-plane, about the slice axis
        angle = T.uniform(batch, geometry.rotation, g, device) * rotate
        c, si = torch.cos(angle), torch.sin(angle)
        in_plane = torch.stack([torch.stack([c, -si], -1), torch.stack([si, c], -1)], -2)
        matrices[:, -2:, -2:] = in_plane
    else:
        for axis in range(3):
            keep = T.chance(batch, s.p_rotation_per_axis, g, device) if s.p_rotation_per_axis < 1 else rotate
            angle = T.uniform(batch, geometry.rotation, g, device) * (rotate & keep)
            matrices = matrices @ _rotation(axis, angle)
    same = T.chance(batch, s.p_synchronize_scaling, g, device)[:, None]
    factors = torch.where(same, T.uniform(batch, s.scaling, g, device)[:, None],
                          T.uniform(batch * dim, s.scaling, g, device).view(batch, dim))
    factors = torch.where(scale[:, None], factors, torch.ones_like(factors))
    if geometry.dummy_2d:
        factors[:, 0] = 1.0
    return matrices * factors[:, None, :], rotate | scale


def _resample_labels(labels: torch.Tensor, grid: torch.Tensor, mode: Interpolation) -> torch.Tensor:
    """Labels on the new grid: nearest, or every label value's one-hot resampled linearly and arg-maxed
    (batchgeneratorsv2's default), each label channel on its own. Voxels sampled from outside the patch become -1."""
    if labels.shape[1] > 1:  # the cascade's previous-stage segmentation rides along as a second channel
        return torch.cat([_resample_labels(labels[:, c:c + 1], grid, mode) for c in range(labels.shape[1])], 1)
    if mode == "nearest":
        return F.grid_sample(labels.float() + 1, grid, mode="nearest", padding_mode="zeros",
                             align_corners=False) - 1  # padding -> -1
    best = torch.full((labels.shape[0], 1, *grid.shape[1:-1]), -1.0, device=labels.device)
    result = torch.full_like(best, -1.0)
    for value in labels.unique().tolist():
        score = F.grid_sample((labels == value).float(), grid, mode="bilinear", padding_mode="zeros",
                              align_corners=False)
        better = score > best
        result[better], best = float(value), torch.maximum(best, score)
    size = torch.tensor(labels.shape[2:][::-1], device=labels.device, dtype=grid.dtype)  # grid is x, y(, z)
    outside = ((grid < -1 + 1 / size) | (grid > 1 - 1 / size)).any(-1)
    result[outside[:, None]] = -1.0
    return result


def spatial_transform(images: torch.Tensor, labels: torch.Tensor, patch_size: Sequence[int],
                      s: AugmentationSettings, geometry: SpatialAugmentationGeometry, g: torch.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate/scale about the patch centre and crop the centre ``patch_size`` from the larger initial patch.

    Samples without rotation/scaling are an exact centre crop; only the others are interpolated.
    """
    batch, dim = images.shape[0], images.ndim - 2
    device = images.device
    in_size = torch.tensor(images.shape[2:], dtype=torch.float32, device=device)
    out_size = torch.tensor(list(patch_size), dtype=torch.float32, device=device)
    matrices, changed = spatial_matrices(batch, dim, s, geometry, g, device)
    crop = tuple(slice((i - o) // 2, (i - o) // 2 + o) for i, o in zip(images.shape[2:], patch_size, strict=True))
    images_out = images[(slice(None), slice(None), *crop)].clone()
    labels_out = labels[(slice(None), slice(None), *crop)].float()
    if changed.any():
        n = int(changed.sum())
        # normalized output coords -> voxel offsets (out/2) -> matrix -> normalized input coords (2/in);
        # grid_sample wants the last spatial axis first, hence the flips.
        theta = (torch.diag_embed(2 / in_size).expand(n, dim, dim) @ matrices[changed]
                 @ torch.diag_embed(out_size / 2).expand(n, dim, dim)).flip(1).flip(2)
        theta = torch.cat([theta, torch.zeros(n, dim, 1, device=device)], dim=2)
        grid = F.affine_grid(theta, [n, 1, *patch_size], align_corners=False)
        mode = "bilinear" if s.image_interpolation == "linear" else "nearest"
        images_out[changed] = F.grid_sample(images[changed], grid, mode=mode, padding_mode="zeros",
                                            align_corners=False)
        labels_out[changed] = _resample_labels(labels[changed], grid, s.seg_interpolation)
    return images_out, labels_out.round().to(torch.int16)


Stage = Callable[[torch.Tensor, torch.Tensor, AugmentationSettings, SpatialAugmentationGeometry, torch.Generator],
                 tuple[torch.Tensor, torch.Tensor]]


def _images_only(step: Callable[[torch.Tensor, AugmentationSettings, SpatialAugmentationGeometry, torch.Generator],
                                torch.Tensor]) -> Stage:
    return lambda x, y, s, geometry, g: (step(x, s, geometry, g), y)


def _rot90_transpose(x: torch.Tensor, y: torch.Tensor, s: AugmentationSettings,
                     geometry: SpatialAugmentationGeometry, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return T.rot90_and_transpose(x, y, s.p_rot90, s.p_transpose, g) if s.p_rot90 > 0 or s.p_transpose > 0 else (x, y)


# Each stage draws exactly what nnU-Net's transform draws; the ones nnU-Net's default does not have (DA5's, at
# probability 0) draw nothing, so adding them to the order changes no other stage's numbers.
_STAGES: dict[str, Stage] = {
    "rot90_transpose": _rot90_transpose,
    "noise": _images_only(lambda x, s, _, g: T.gaussian_noise(x, s.p_noise, s.noise_variance, g)),
    "blur": _images_only(lambda x, s, _, g: T.smoothing(
        x, s.p_blur, s.blur_sigma, s.blur_p_per_channel, s.blur_synchronize_axes, s.p_median_instead_of_blur,
        s.median_size, s.median_p_per_channel, g)),
    "additive_brightness": _images_only(lambda x, s, _, g: T.additive_brightness(
        x, s.p_additive_brightness, s.additive_brightness_sigma, s.additive_brightness_p_per_channel, g)
        if s.p_additive_brightness > 0 else x),
    "brightness": _images_only(lambda x, s, _, g: T.multiplicative_brightness(x, s.p_brightness, s.brightness, g)),
    "contrast": _images_only(lambda x, s, _, g: T.contrast(x, s.p_contrast, s.contrast, s.contrast_p_per_channel,
                                                           s.p_contrast_preserve_range, g)),
    "low_resolution": _images_only(lambda x, s, geometry, g: T.low_resolution(
        x, s.p_low_resolution, s.low_resolution_scale, s.low_resolution_p_per_channel,
        (0,) if geometry.dummy_2d else (), g)),
    "gamma_inverted": _images_only(lambda x, s, _, g: T.gamma(x, s.p_gamma_inverted, True, s.gamma, g)),
    "gamma": _images_only(lambda x, s, _, g: T.gamma(x, s.p_gamma, s.gamma_second_inverted, s.gamma, g)),
    "mirror": lambda x, y, s, geometry, g: T.mirror(x, y, s.p_mirror, geometry.mirror_axes, g),
    "blank_rectangles": _images_only(lambda x, s, _, g: T.blank_rectangles(
        x, s.p_blank_rectangles, s.blank_rectangles, s.blank_rectangles_p_per_channel, g)
        if s.p_blank_rectangles > 0 else x),
    "brightness_gradient": _images_only(lambda x, s, _, g: T.brightness_gradient(
        x, s.p_brightness_gradient, s.local_p_per_channel, g) if s.p_brightness_gradient > 0 else x),
    "local_gamma": _images_only(lambda x, s, _, g: T.local_gamma(x, s.p_local_gamma, s.local_p_per_channel, g)
                                if s.p_local_gamma > 0 else x),
    "sharpen": _images_only(lambda x, s, _, g: T.sharpen(x, s.p_sharpen, s.sharpen_strength, s.sharpen_p_per_channel,
                                                         g) if s.p_sharpen > 0 else x),
}


def user_transforms(settings: AugmentationSettings) -> dict[str, T.BatchTransform]:
    """The user's transforms of ``settings.transforms``, created (each class checked to be a BatchTransform)."""
    return {c.where.removeprefix("augmentation.transforms."): c.create()
            for c in components(settings.transforms, "augmentation.transforms", T.BatchTransform)}


def check_transforms(settings: AugmentationSettings, channels: int, patch_size: Sequence[int]) -> None:
    """Each user transform created and run once on a dummy batch, before training starts."""
    images = torch.zeros((2, channels, *patch_size))
    labels = torch.zeros((2, 1, *patch_size), dtype=torch.int16)
    for name, transform in user_transforms(settings).items():
        where = f"augmentation.transforms.{name}"
        try:
            T.checked_apply(transform, images, labels, torch.Generator().manual_seed(0), where)
        except Exception as e:  # whatever the user's transform raises on the dummy batch is reported by name
            raise UserError(f"{where} failed on a dummy batch (images {list(images.shape)}, labels "
                            f"{list(labels.shape)}): {type(e).__name__}: {e}") from None


def augment(images: torch.Tensor, labels: torch.Tensor, patch_size: Sequence[int], s: AugmentationSettings,
            geometry: SpatialAugmentationGeometry, generator: torch.Generator, mask_channels: Sequence[int] = (),
            transforms: Mapping[str, T.BatchTransform] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The full training augmentation of a batch drawn at the initial patch size: ``s.order``'s stages.

    ``images`` float ``(b, c, *initial)``, ``labels`` int ``(b, 1, *initial)`` with -1 outside the non-zero
    mask / padding. ``mask_channels`` (the plan's ``use_mask_for_norm``) are set to 0 outside that mask again.
    ``transforms``: the user's (:func:`user_transforms`). Returns images and labels of ``patch_size``, labels
    with -1 mapped to 0.
    """
    g = generator
    user = transforms if transforms is not None else user_transforms(s) if s.transforms else {}
    images, labels = spatial_transform(images.float(), labels, patch_size, s, geometry, g)
    for name in s.order[1:]:
        if name in _STAGES:
            images, labels = _STAGES[name](images, labels, s, geometry, g)
        else:
            images, labels = T.apply_chosen(user[name], images, labels, g, f"augmentation.transforms.{name}")
    if mask_channels:
        outside = (labels[:, :1] < 0).expand(-1, len(mask_channels), *labels.shape[2:])
        masked = images[:, list(mask_channels)]
        masked[outside] = 0.0
        images[:, list(mask_channels)] = masked
    return images, labels.clamp_min(0)


def deep_supervision_targets(labels: torch.Tensor, scales: Sequence[Sequence[float]]) -> list[torch.Tensor]:
    """Labels downsampled (nearest) to each deep-supervision output: scales are 1/cumprod(strides)."""
    targets = []
    for scale in scales:
        size = [round(n * f) for n, f in zip(labels.shape[2:], scale, strict=True)]
        same = size == list(labels.shape[2:])
        targets.append(labels if same else F.interpolate(labels.float(), size=size, mode="nearest-exact").to(
            labels.dtype))
    return targets


def labels_to_regions(labels: torch.Tensor, regions: Sequence[Sequence[int]], ignore_label: int | None = None
                      ) -> torch.Tensor:
    """One channel per region (``label in region``), plus a last channel marking the ignore label if any
    (nnU-Net's ``ConvertSegmentationToRegionsTransform`` layout, which the region loss reads)."""
    channels = [torch.isin(labels, torch.tensor(list(r), device=labels.device)) for r in regions]
    if ignore_label is not None:
        channels.append(labels == ignore_label)
    return torch.cat(channels, dim=1).to(labels.dtype)
