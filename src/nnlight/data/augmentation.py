"""nnU-Net's training augmentation as batched torch operations that run on the training device.

CPU workers only read and crop patches (``nnlight.data.sampling``); everything here works on a whole
batch tensor at once, so on a GPU the data pipeline is not the bottleneck it is in nnU-Net (its issue
#3063: about 1 s of CPU per sample). Order and probabilities follow ``nnUNetTrainer.get_training_transforms``:
spatial (rotation, scaling, centre crop) → Gaussian noise → Gaussian blur → brightness → contrast →
low resolution → inverted gamma → gamma → mirroring → mask outside → label -1 → 0.
Every random draw comes from the ``torch.Generator`` passed in, so a seed fixes the result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Range = tuple[float, float]


@dataclass(frozen=True)
class AugmentationSettings:
    """Probabilities (per sample unless noted) and ranges; defaults are nnU-Net's."""

    p_rotation: float = 0.2
    rotation: Range = (-math.pi / 6, math.pi / 6)  # radians; set from the patch shape by the data module
    p_scaling: float = 0.2
    scaling: Range = (0.7, 1.4)
    dummy_2d: bool = False  # rotate/scale in-plane only (anisotropic 3D patches)
    p_noise: float = 0.1
    noise_variance: Range = (0.0, 0.1)
    p_blur: float = 0.2
    blur_sigma: Range = (0.5, 1.0)
    blur_p_per_channel: float = 0.5
    p_brightness: float = 0.15
    brightness: Range = (0.75, 1.25)
    p_contrast: float = 0.15
    contrast: Range = (0.75, 1.25)
    p_low_resolution: float = 0.25
    low_resolution_scale: Range = (0.5, 1.0)
    low_resolution_p_per_channel: float = 0.5
    p_gamma_inverted: float = 0.1
    p_gamma: float = 0.3
    gamma: Range = (0.7, 1.5)
    p_mirror: float = 0.5  # per axis
    mirror_axes: tuple[int, ...] = (0, 1, 2)
    mask_channels: tuple[int, ...] = ()  # channels normalized inside the non-zero mask: zeroed outside


def _uniform(n: int, value_range: Range, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    low, high = value_range
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def _chance(n: int, p: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device) < p


def _rotation(axis: int, angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(b, 3, 3)`` about one axis (numpy axis order)."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    rows = {0: [[one, zero, zero], [zero, c, -s], [zero, s, c]],
            1: [[c, zero, s], [zero, one, zero], [-s, zero, c]],
            2: [[c, -s, zero], [s, c, zero], [zero, zero, one]]}[axis]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def spatial_matrices(batch: int, dim: int, s: AugmentationSettings, generator: torch.Generator,
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample matrices mapping output voxel offsets to input voxel offsets, and which samples changed."""
    rotate = _chance(batch, s.p_rotation, generator, device)
    scale = _chance(batch, s.p_scaling, generator, device)
    matrices = torch.eye(dim, device=device).repeat(batch, 1, 1)
    if dim == 2:
        angle = _uniform(batch, s.rotation, generator, device) * rotate
        c, si = torch.cos(angle), torch.sin(angle)
        matrices = torch.stack([torch.stack([c, -si], -1), torch.stack([si, c], -1)], -2)
    else:
        axes = (0,) if s.dummy_2d else (0, 1, 2)  # dummy 2D: rotate about the slice axis only
        for axis in axes:
            angle = _uniform(batch, s.rotation, generator, device) * rotate
            matrices = matrices @ _rotation(axis, angle)
    factor = torch.where(scale, _uniform(batch, s.scaling, generator, device), torch.ones(batch, device=device))
    scaling = torch.ones(batch, dim, device=device) * factor[:, None]
    if s.dummy_2d and dim == 3:
        scaling[:, 0] = 1.0
    # zooming in by `factor` samples the input on a grid shrunk by 1/factor
    return matrices / scaling[:, None, :], rotate | scale


def spatial_transform(images: torch.Tensor, labels: torch.Tensor, patch_size: Sequence[int],
                      s: AugmentationSettings, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate/scale about the patch centre and crop the centre ``patch_size`` from the larger initial patch."""
    batch, dim = images.shape[0], images.ndim - 2
    device = images.device
    in_size = torch.tensor(images.shape[2:], dtype=torch.float32, device=device)
    out_size = torch.tensor(list(patch_size), dtype=torch.float32, device=device)
    matrices, changed = spatial_matrices(batch, dim, s, generator, device)
    # normalized output coords -> voxel offsets (out/2) -> matrix -> normalized input coords (2/in);
    # grid_sample wants the last spatial axis first, hence the flips.
    # Samples without rotation/scaling are an exact centre crop; only the others are interpolated.
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
        images_out[changed] = F.grid_sample(images[changed], grid, mode="bilinear", padding_mode="zeros",
                                            align_corners=False)
        labels_out[changed] = F.grid_sample(labels[changed].float() + 1, grid, mode="nearest",
                                            padding_mode="zeros", align_corners=False) - 1  # padding -> -1
    return images_out, labels_out.round().to(torch.int16)


def gaussian_noise(x: torch.Tensor, s: AugmentationSettings, g: torch.Generator) -> torch.Tensor:
    apply = _chance(x.shape[0], s.p_noise, g, x.device)
    std = _uniform(x.shape[0], s.noise_variance, g, x.device).sqrt() * apply
    noise = torch.randn(x.shape, generator=g, device=x.device)
    return x + noise * std.view(-1, *[1] * (x.ndim - 1))


def _blur_one(image: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of one ``(*spatial)`` image with a sigma per axis."""
    out = image[None, None]
    for axis, sigma in enumerate(sigmas.tolist()):
        radius = max(math.ceil(3 * sigma), 1)
        t = torch.arange(-radius, radius + 1, device=image.device, dtype=image.dtype)
        kernel = torch.exp(-0.5 * (t / sigma) ** 2)
        kernel = kernel / kernel.sum()
        shape = [1, 1] + [1] * image.ndim
        shape[2 + axis] = kernel.numel()
        pad = [0, 0] * image.ndim
        pad[2 * (image.ndim - 1 - axis)] = pad[2 * (image.ndim - 1 - axis) + 1] = radius
        conv = F.conv2d if image.ndim == 2 else F.conv3d
        out = conv(F.pad(out, pad, mode="replicate"), kernel.view(shape))
    return out[0, 0]


def gaussian_blur(x: torch.Tensor, s: AugmentationSettings, g: torch.Generator) -> torch.Tensor:
    batch, channels = x.shape[:2]
    apply = _chance(batch, s.p_blur, g, x.device)[:, None] & _chance(batch * channels, s.blur_p_per_channel, g,
                                                                      x.device).view(batch, channels)
    sigmas = _uniform(batch * channels * (x.ndim - 2), s.blur_sigma, g, x.device).view(batch, channels, -1)
    if s.dummy_2d and x.ndim == 5:
        sigmas[:, :, 0] = 0.0  # no blur across slices of an anisotropic patch
    x = x.clone()
    for b, c in apply.nonzero().tolist():
        sigma = sigmas[b, c]
        if sigma[0] == 0:  # dummy 2D: blur each slice in-plane
            x[b, c] = torch.stack([_blur_one(slab, sigma[1:]) for slab in x[b, c]])
        else:
            x[b, c] = _blur_one(x[b, c], sigma)
    return x


def brightness(x: torch.Tensor, s: AugmentationSettings, g: torch.Generator) -> torch.Tensor:
    batch, channels = x.shape[:2]
    apply = _chance(batch, s.p_brightness, g, x.device)[:, None]
    factor = _uniform(batch * channels, s.brightness, g, x.device).view(batch, channels)
    factor = torch.where(apply, factor, torch.ones_like(factor))
    return x * factor.view(batch, channels, *[1] * (x.ndim - 2))


def contrast(x: torch.Tensor, s: AugmentationSettings, g: torch.Generator) -> torch.Tensor:
    """Scale around the per-channel mean, clipped back into the original range (preserve_range)."""
    batch, channels = x.shape[:2]
    apply = _chance(batch, s.p_contrast, g, x.device)[:, None]
    factor = _uniform(batch * channels, s.contrast, g, x.device).view(batch, channels)
    factor = torch.where(apply, factor, torch.ones_like(factor)).view(batch, channels, *[1] * (x.ndim - 2))
    flat = x.flatten(2)
    mean = flat.mean(-1).view_as(factor)
    low, high = flat.amin(-1).view_as(factor), flat.amax(-1).view_as(factor)
    changed = torch.maximum(torch.minimum((x - mean) * factor + mean, high), low)
    return torch.where(apply.view(batch, 1, *[1] * (x.ndim - 2)), changed, x)  # untouched samples stay exact


def low_resolution(x: torch.Tensor, s: AugmentationSettings, g: torch.Generator) -> torch.Tensor:
    """Downsample (nearest) by a random factor and upsample back (linear) per selected channel."""
    batch, channels = x.shape[:2]
    apply = _chance(batch, s.p_low_resolution, g, x.device)[:, None] & _chance(
        batch * channels, s.low_resolution_p_per_channel, g, x.device).view(batch, channels)
    scales = _uniform(batch * channels * (x.ndim - 2), s.low_resolution_scale, g, x.device).view(batch, channels, -1)
    mode = "bilinear" if x.ndim == 4 else "trilinear"
    x = x.clone()
    for b, c in apply.nonzero().tolist():
        size = list(x.shape[2:])
        factors = scales[b, c].tolist()
        if s.dummy_2d and x.ndim == 5:
            factors[0] = 1.0
        small = [max(1, round(n * f)) for n, f in zip(size, factors, strict=True)]
        down = F.interpolate(x[b, c][None, None], size=small, mode="nearest-exact")
        x[b, c] = F.interpolate(down, size=size, mode=mode, align_corners=False)[0, 0]
    return x


def gamma(x: torch.Tensor, p: float, invert: bool, s: AugmentationSettings, g: torch.Generator) -> torch.Tensor:
    """Gamma on the [min, max]-normalized image, mean and std restored (retain_stats); ``invert`` works on -x."""
    batch, channels = x.shape[:2]
    apply = _chance(batch, p, g, x.device)
    low_half = _chance(batch * channels, 0.5, g, x.device)  # nnU-Net: half the draws below 1
    below = _uniform(batch * channels, (s.gamma[0], 1.0), g, x.device)
    above = _uniform(batch * channels, (1.0, s.gamma[1]), g, x.device)
    gammas = torch.where(low_half, below, above).view(batch, channels)
    x = x.clone()
    for b in apply.nonzero().flatten().tolist():
        image = -x[b] if invert else x[b]
        flat = image.flatten(1)
        mean, std = flat.mean(-1), flat.std(-1)
        low, high = flat.amin(-1), flat.amax(-1)
        shape = (channels, *[1] * (x.ndim - 2))
        span = (high - low).clamp_min(1e-7).view(shape)
        out = ((image - low.view(shape)) / span).clamp_min(0) ** gammas[b].view(shape) * span + low.view(shape)
        out_flat = out.flatten(1)
        out = (out - out_flat.mean(-1).view(shape)) / (out_flat.std(-1).view(shape) + 1e-8) * std.view(shape) \
            + mean.view(shape)
        x[b] = -out if invert else out
    return x


def mirror(images: torch.Tensor, labels: torch.Tensor, s: AugmentationSettings, g: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor]:
    for axis in s.mirror_axes:
        if axis >= images.ndim - 2:
            continue
        flip = _chance(images.shape[0], s.p_mirror, g, images.device)
        if flip.any():
            images[flip] = images[flip].flip(axis + 2)
            labels[flip] = labels[flip].flip(axis + 2)
    return images, labels


def augment(images: torch.Tensor, labels: torch.Tensor, patch_size: Sequence[int], s: AugmentationSettings,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The full training augmentation of a batch drawn at the initial patch size.

    ``images`` float ``(b, c, *initial)``, ``labels`` int ``(b, 1, *initial)`` with -1 outside the non-zero
    mask / padding. Returns images and labels of ``patch_size``, labels with -1 mapped to 0.
    """
    images, labels = spatial_transform(images.float(), labels, patch_size, s, generator)
    images = gaussian_noise(images, s, generator)
    images = gaussian_blur(images, s, generator)
    images = brightness(images, s, generator)
    images = contrast(images, s, generator)
    images = low_resolution(images, s, generator)
    images = gamma(images, s.p_gamma_inverted, True, s, generator)
    images = gamma(images, s.p_gamma, False, s, generator)
    images, labels = mirror(images, labels, s, generator)
    if s.mask_channels:
        outside = (labels < 0).expand(-1, len(s.mask_channels), *labels.shape[2:])
        masked = images[:, list(s.mask_channels)]
        masked[outside] = 0.0
        images[:, list(s.mask_channels)] = masked
    labels = labels.clamp_min(0)
    return images, labels


def deep_supervision_targets(labels: torch.Tensor, scales: Sequence[Sequence[float]]) -> list[torch.Tensor]:
    """Labels downsampled (nearest) to each deep-supervision output: scales are 1/cumprod(strides)."""
    targets = []
    for scale in scales:
        size = [round(n * f) for n, f in zip(labels.shape[2:], scale, strict=True)]
        same = size == list(labels.shape[2:])
        targets.append(labels if same else F.interpolate(labels.float(), size=size, mode="nearest-exact").to(
            labels.dtype))
    return targets


def labels_to_regions(labels: torch.Tensor, regions: Sequence[Sequence[int]]) -> torch.Tensor:
    """One channel per region (``label in region``), for region-based training such as BraTS's tumour sub-regions."""
    return torch.cat([torch.isin(labels, torch.tensor(list(r), device=labels.device)) for r in regions],
                     dim=1).to(labels.dtype)
