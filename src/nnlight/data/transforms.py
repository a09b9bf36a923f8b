"""The batched augmentation transforms (nnU-Net's batchgeneratorsv2 transforms, on whole batches on the device).

Each takes a batch ``(b, c, *spatial)``, the probabilities and ranges it needs and a ``torch.Generator``; every
random draw comes from that generator, so a seed fixes the result. ``nnlight.data.augmentation`` chains them.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
import torch.nn.functional as F

Range = tuple[float, float]


def uniform(n: int, value_range: Range, g: torch.Generator, device: torch.device) -> torch.Tensor:
    low, high = value_range
    return torch.rand(n, generator=g, device=device) * (high - low) + low


def chance(n: int, p: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) < p


def below_or_above_one(n: int, value_range: Range, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """batchgeneratorsv2's BGContrast: half the draws from [low, 1), half from [1, high] (if low < 1)."""
    low, high = value_range
    below = uniform(n, (low, 1.0), g, device)
    above = uniform(n, (max(low, 1.0), high), g, device)
    return torch.where(chance(n, 0.5, g, device) & (low < 1), below, above)


def _randint(low: int, high: int, g: torch.Generator, device: torch.device) -> int:
    """One integer from ``[low, high)``."""
    return int(torch.randint(low, high, (1,), generator=g, device=device))


def _per_channel(batch: int, channels: int, p_sample: float, p_channel: float, g: torch.Generator,
                 device: torch.device) -> torch.Tensor:
    """``(b, c)`` mask: the sample is chosen with ``p_sample``, then each channel with ``p_channel``."""
    return chance(batch, p_sample, g, device)[:, None] & chance(batch * channels, p_channel, g, device).view(
        batch, channels)


def _broadcast(values: torch.Tensor, ndim: int) -> torch.Tensor:
    return values.view(*values.shape, *[1] * (ndim - values.ndim))


def gaussian_noise(x: torch.Tensor, p: float, variance: Range, g: torch.Generator) -> torch.Tensor:
    apply = chance(x.shape[0], p, g, x.device)
    std = uniform(x.shape[0], variance, g, x.device).sqrt() * apply
    noise = torch.randn(x.shape, generator=g, device=x.device)
    return x + noise * _broadcast(std, x.ndim)


def blur_one(image: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """Separable Gaussian blur of one ``(*spatial)`` image with a sigma per axis (0 = that axis untouched)."""
    out = image[None, None]
    for axis, sigma in enumerate(sigmas):
        if sigma <= 0:
            continue
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


def _symmetric_pad(image: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """scipy.ndimage's default 'reflect' border (the edge voxel repeated): ``c b a | a b c | c b a``."""
    for axis in range(image.ndim):
        head = image.narrow(axis, 0, before).flip(axis)
        tail = image.narrow(axis, image.shape[axis] - after, after).flip(axis)
        image = torch.cat([head, image, tail], dim=axis)
    return image


def median_filter(image: torch.Tensor, size: int, max_elements: int = 2**25) -> torch.Tensor:
    """scipy.ndimage.median_filter(image, size) of one ``(*spatial)`` image, computed in slabs to bound memory."""
    padded = _symmetric_pad(image, size // 2, size - size // 2 - 1)
    rank = size ** image.ndim // 2 + 1  # scipy picks element n // 2 of the sorted window
    slab = max(1, max_elements // (size ** image.ndim * math.prod(image.shape[1:])))
    out = torch.empty_like(image)
    for start in range(0, image.shape[0], slab):
        stop = min(start + slab, image.shape[0])
        windows = padded[start:stop + size - 1]
        for axis in range(image.ndim):
            windows = windows.unfold(axis, size, 1)
        out[start:stop] = windows.reshape(*windows.shape[:image.ndim], -1).kthvalue(rank, dim=-1).values
    return out


def smoothing(x: torch.Tensor, p: float, sigma: Range, p_channel: float, synchronize_axes: bool,
              p_median: float, median_size: tuple[int, int], median_p_channel: float, g: torch.Generator
              ) -> torch.Tensor:
    """Gaussian blur per channel; with ``p_median`` a sample gets a median filter instead (DA5's OneOf)."""
    batch, channels, dims = x.shape[0], x.shape[1], x.ndim - 2
    chosen = chance(batch, p, g, x.device)
    median = chance(batch, p_median, g, x.device) & chosen if p_median > 0 else torch.zeros_like(chosen)
    blur_channels = (chosen & ~median)[:, None] & chance(batch * channels, p_channel, g, x.device).view(
        batch, channels)
    sigmas = uniform(batch * channels * (1 if synchronize_axes else dims), sigma, g, x.device)
    sigmas = sigmas.view(batch, channels, -1).expand(batch, channels, dims)
    x = x.clone()
    for b, c in blur_channels.nonzero().tolist():
        x[b, c] = blur_one(x[b, c], sigmas[b, c].tolist())
    if median.any():
        median_channels = median[:, None] & chance(batch * channels, median_p_channel, g, x.device).view(
            batch, channels)
        sizes = torch.randint(median_size[0], median_size[1], (batch * channels,), generator=g, device=x.device)
        for b, c in median_channels.nonzero().tolist():
            x[b, c] = median_filter(x[b, c], int(sizes[b * channels + c]))
    return x


def additive_brightness(x: torch.Tensor, p: float, sigma: float, p_channel: float, g: torch.Generator
                        ) -> torch.Tensor:
    """DA5: add N(0, sigma) per chosen channel."""
    apply = _per_channel(x.shape[0], x.shape[1], p, p_channel, g, x.device)
    shift = torch.randn(x.shape[:2], generator=g, device=x.device) * sigma * apply
    return x + _broadcast(shift, x.ndim)


def multiplicative_brightness(x: torch.Tensor, p: float, value_range: Range, g: torch.Generator) -> torch.Tensor:
    batch, channels = x.shape[:2]
    apply = chance(batch, p, g, x.device)[:, None]
    factor = below_or_above_one(batch * channels, value_range, g, x.device).view(batch, channels)
    return x * _broadcast(torch.where(apply, factor, torch.ones_like(factor)), x.ndim)


def contrast(x: torch.Tensor, p: float, value_range: Range, p_channel: float, p_preserve_range: float,
             g: torch.Generator) -> torch.Tensor:
    """Scale around the per-channel mean; clipped back into the original range with ``p_preserve_range``."""
    batch, channels = x.shape[:2]
    apply = _per_channel(batch, channels, p, p_channel, g, x.device)
    preserve = chance(batch, p_preserve_range, g, x.device)
    factor = _broadcast(below_or_above_one(batch * channels, value_range, g, x.device).view(batch, channels), x.ndim)
    flat = x.flatten(2)
    mean = _broadcast(flat.mean(-1), x.ndim)
    changed = (x - mean) * factor + mean
    clipped = torch.maximum(torch.minimum(changed, _broadcast(flat.amax(-1), x.ndim)),
                            _broadcast(flat.amin(-1), x.ndim))
    changed = torch.where(_broadcast(preserve, x.ndim), clipped, changed)
    return torch.where(_broadcast(apply, x.ndim), changed, x)  # untouched channels stay exact


def low_resolution(x: torch.Tensor, p: float, scale: Range, p_channel: float, keep_axes: Sequence[int],
                   g: torch.Generator) -> torch.Tensor:
    """Downsample (nearest) by one random factor for all axes but ``keep_axes``, upsample back (linear)."""
    batch, channels = x.shape[:2]
    apply = _per_channel(batch, channels, p, p_channel, g, x.device)
    scales = uniform(batch * channels, scale, g, x.device).view(batch, channels)
    mode = "bilinear" if x.ndim == 4 else "trilinear"
    x = x.clone()
    for b, c in apply.nonzero().tolist():
        size = list(x.shape[2:])
        small = [n if axis in keep_axes else max(1, round(n * float(scales[b, c]))) for axis, n in enumerate(size)]
        down = F.interpolate(x[b, c][None, None], size=small, mode="nearest-exact")
        x[b, c] = F.interpolate(down, size=size, mode=mode, align_corners=False)[0, 0]
    return x


def gamma(x: torch.Tensor, p: float, invert: bool, value_range: Range, g: torch.Generator) -> torch.Tensor:
    """Gamma on the [min, max]-normalized image, mean and std restored (retain_stats); ``invert`` works on -x."""
    batch, channels = x.shape[:2]
    apply = chance(batch, p, g, x.device)
    gammas = below_or_above_one(batch * channels, value_range, g, x.device).view(batch, channels)
    x = x.clone()
    shape = (channels, *[1] * (x.ndim - 2))
    for b in apply.nonzero().flatten().tolist():
        image = -x[b] if invert else x[b]
        flat = image.flatten(1)
        mean, std = flat.mean(-1), flat.std(-1)
        low, high = flat.amin(-1).view(shape), flat.amax(-1).view(shape)
        span = (high - low).clamp_min(1e-7)
        out = ((image - low) / span).clamp_min(0) ** gammas[b].view(shape) * span + low
        out_flat = out.flatten(1)
        out = (out - out_flat.mean(-1).view(shape)) / (out_flat.std(-1).view(shape) + 1e-8) * std.view(shape) \
            + mean.view(shape)
        x[b] = -out if invert else out
    return x


def mirror(images: torch.Tensor, labels: torch.Tensor, p: float, axes: Sequence[int], g: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor]:
    for axis in axes:
        flip = chance(images.shape[0], p, g, images.device)
        if flip.any():
            images[flip] = images[flip].flip(axis + 2)
            labels[flip] = labels[flip].flip(axis + 2)
    return images, labels


def equal_size_axes(patch_size: Sequence[int]) -> list[int]:
    """The axes sharing the most common patch edge length, if at least two do (DA5's rot90/transpose axes)."""
    counts = [sum(a == b for b in patch_size) for a in patch_size]
    return [i for i, c in enumerate(counts) if c == max(counts)] if max(counts) > 1 else []


def rot90_and_transpose(images: torch.Tensor, labels: torch.Tensor, p_rot90: float, p_transpose: float,
                        g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """DA5: rotate by k·90° in a random plane of equal-size axes, then permute those axes at random."""
    axes = equal_size_axes(images.shape[2:])
    if not axes:
        return images, labels
    batch = images.shape[0]
    rotate, transpose = chance(batch, p_rot90, g, images.device), chance(batch, p_transpose, g, images.device)
    for b in range(batch):
        if rotate[b]:
            k = _randint(0, 4, g, images.device)
            plane = torch.randperm(len(axes), generator=g, device=images.device)[:2].sort().values.tolist()
            dims = [axes[plane[0]] + 1, axes[plane[1]] + 1]
            images[b], labels[b] = images[b].rot90(k, dims).clone(), labels[b].rot90(k, dims).clone()
        if transpose[b]:
            order = torch.randperm(len(axes), generator=g, device=images.device).tolist()
            permutation = list(range(images.ndim - 1))
            for source, target in zip(axes, [axes[i] for i in order], strict=True):
                permutation[source + 1] = target + 1
            images[b], labels[b] = images[b].permute(permutation).clone(), labels[b].permute(permutation).clone()
    return images, labels


def blank_rectangles(x: torch.Tensor, p: float, count: tuple[int, int], p_channel: float, g: torch.Generator
                     ) -> torch.Tensor:
    """DA5: fill 1-4 boxes (edges 1/10 to 1/3 of the patch) per chosen channel with the box's mean value."""
    batch, channels, spatial = x.shape[0], x.shape[1], x.shape[2:]
    apply = _per_channel(batch, channels, p, p_channel, g, x.device)
    x = x.clone()
    for b, c in apply.nonzero().tolist():
        for _ in range(_randint(count[0], count[1], g, x.device)):
            box = []
            for n in spatial:
                low, high = max(1, n // 10), max(max(1, n // 10) + 1, n // 3)
                size = _randint(low, high, g, x.device)
                start = _randint(0, n - size + 1, g, x.device)
                box.append(slice(start, start + size))
            region = x[(b, c, *box)]
            region.fill_(region.mean())
    return x


def _local_kernel(shape: Sequence[int], g: torch.Generator, device: torch.device) -> torch.Tensor:
    """A smooth blob in [0, 1]: per axis a Gaussian (σ log-uniform in [n/6, n]) centred in [-n/2, 1.5 n]."""
    kernel = torch.ones((), device=device)
    for n in shape:
        sigma = math.exp(float(uniform(1, (math.log(max(n // 6, 1)), math.log(n)), g, device)))
        centre = float(uniform(1, (-0.5, 1.5), g, device)) * n
        edges = torch.arange(n + 1, device=device, dtype=torch.float32) - 0.5
        cdf = 0.5 * (1 + torch.erf((edges - centre) / (sigma * math.sqrt(2))))
        kernel = kernel[..., None] * cdf.diff()
    kernel = kernel - kernel.min()
    return kernel / kernel.max() if kernel.max() > 0 else kernel


def brightness_gradient(x: torch.Tensor, p: float, p_channel: float, g: torch.Generator) -> torch.Tensor:
    """DA5: add a smooth blob of strength ±[1, 5] per chosen channel (simulated intensity inhomogeneity)."""
    apply = _per_channel(x.shape[0], x.shape[1], p, p_channel, g, x.device)
    x = x.clone()
    for b, c in apply.nonzero().tolist():
        strength = float(uniform(1, (1.0, 5.0), g, x.device)) * (1 if bool(chance(1, 0.5, g, x.device)) else -1)
        x[b, c] += _local_kernel(x.shape[2:], g, x.device) * strength
    return x


def local_gamma(x: torch.Tensor, p: float, p_channel: float, g: torch.Generator) -> torch.Tensor:
    """DA5: gamma (0.01-0.8 or 1.5-4) blended in through a smooth blob, on the [min, max]-normalized channel."""
    apply = _per_channel(x.shape[0], x.shape[1], p, p_channel, g, x.device)
    x = x.clone()
    for b, c in apply.nonzero().tolist():
        kernel = _local_kernel(x.shape[2:], g, x.device)
        value = float(uniform(1, (0.01, 0.8), g, x.device)) if bool(chance(1, 0.5, g, x.device)) else \
            float(uniform(1, (1.5, 4.0), g, x.device))
        low, span = x[b, c].min(), (x[b, c].max() - x[b, c].min()).clamp_min(1e-8)
        normalized = (x[b, c] - low) / span
        x[b, c] = (normalized * (1 - kernel) + normalized.pow(value) * kernel) * span + low
    return x


def sharpen(x: torch.Tensor, p: float, strength: Range, p_channel: float, g: torch.Generator) -> torch.Tensor:
    """DA5: add ``strength`` × the Laplacian (replicate border) per chosen channel."""
    dims = x.ndim - 2
    apply = _per_channel(x.shape[0], x.shape[1], p, p_channel, g, x.device)
    strengths = uniform(x.shape[0] * x.shape[1], strength, g, x.device).view(x.shape[:2])
    kernel = torch.zeros([3] * dims, device=x.device)
    centre = tuple([1] * dims)
    kernel[centre] = 2 * dims
    for axis in range(dims):
        for offset in (0, 2):
            index = list(centre)
            index[axis] = offset
            kernel[tuple(index)] = -1
    conv = F.conv2d if dims == 2 else F.conv3d
    x = x.clone()
    for b, c in apply.nonzero().tolist():
        image = x[b, c][None, None]
        laplace = conv(F.pad(image, [1, 1] * dims, mode="replicate"), kernel[None, None])
        x[b, c] = (image + laplace * strengths[b, c])[0, 0]
    return x


class BatchTransform(ABC):
    """A user's augmentation step, a stage of ``augmentation.order`` (README: "Bring your own method").

    nnlight draws, per sample, whether it runs (probability ``p``, from the augmentation's generator) and calls
    :meth:`apply` with the chosen samples only: images ``(n, c, *patch)`` float, labels ``(n, 1, *patch)`` int16
    with -1 outside the image (mapped to 0 at the end). It returns both with the same shapes; every random draw
    should come from ``generator`` so a seed fixes the result. It runs on the training device.
    """

    def __init__(self, p: float) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"p={p}: a probability in [0, 1]")
        self.p = p

    @abstractmethod
    def apply(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformed images and labels of the chosen samples."""


def checked_apply(transform: BatchTransform, images: torch.Tensor, labels: torch.Tensor, g: torch.Generator,
                  where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``transform.apply``; a result of other shapes is an error naming the transform."""
    new_images, new_labels = transform.apply(images, labels, g)
    if new_images.shape != images.shape or new_labels.shape != labels.shape:
        raise ValueError(f"{where} returned images {list(new_images.shape)} and labels {list(new_labels.shape)} for "
                         f"images {list(images.shape)} and labels {list(labels.shape)}; it must keep the shapes")
    return new_images, new_labels


def apply_chosen(transform: BatchTransform, images: torch.Tensor, labels: torch.Tensor, g: torch.Generator,
                 where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``transform`` on the samples chosen with its probability."""
    chosen = chance(images.shape[0], transform.p, g, images.device)
    if not chosen.any():
        return images, labels
    new_images, new_labels = checked_apply(transform, images[chosen], labels[chosen], g, where)
    images, labels = images.clone(), labels.clone()
    images[chosen], labels[chosen] = new_images.to(images.dtype), new_labels.to(labels.dtype)
    return images, labels
