"""Device augmentation: each transform fires at its probability, labels stay aligned, a seed fixes the result."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nnlight.data.augmentation import AugmentationSettings, augment, deep_supervision_targets

OFF = AugmentationSettings(p_rotation=0, p_scaling=0, p_noise=0, p_blur=0, p_brightness=0, p_contrast=0,
                           p_low_resolution=0, p_gamma_inverted=0, p_gamma=0, p_mirror=0, mirror_axes=(0, 1))
DEFAULT = AugmentationSettings(mirror_axes=(0, 1))

# transform -> (settings with only it enabled at nnU-Net's default probability, expected fraction of changed samples)
ONLY = {
    "rotation": (dataclasses.replace(OFF, p_rotation=DEFAULT.p_rotation), 0.2),
    "scaling": (dataclasses.replace(OFF, p_scaling=DEFAULT.p_scaling), 0.2),
    "noise": (dataclasses.replace(OFF, p_noise=DEFAULT.p_noise), 0.1),
    "blur": (dataclasses.replace(OFF, p_blur=DEFAULT.p_blur), 0.2 * 0.5),  # per sample x per channel
    "brightness": (dataclasses.replace(OFF, p_brightness=DEFAULT.p_brightness), 0.15),
    "contrast": (dataclasses.replace(OFF, p_contrast=DEFAULT.p_contrast), 0.15),
    # a range that always changes the size, so every firing is visible
    "low_resolution": (dataclasses.replace(OFF, p_low_resolution=DEFAULT.p_low_resolution,
                                           low_resolution_scale=(0.5, 0.6)), 0.25 * 0.5),
    "gamma_inverted": (dataclasses.replace(OFF, p_gamma_inverted=DEFAULT.p_gamma_inverted), 0.1),
    "gamma": (dataclasses.replace(OFF, p_gamma=DEFAULT.p_gamma), 0.3),
    "mirror": (dataclasses.replace(OFF, p_mirror=DEFAULT.p_mirror), 1 - 0.5 ** 2),  # either of two axes
}


def _batch(n: int, size: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 1, size, size, generator=g) * 2 + 5
    labels = torch.zeros(n, 1, size, size, dtype=torch.int16)
    labels[:, :, 6:14, 4:18] = 1
    return images, labels


@pytest.mark.parametrize("name", sorted(ONLY))
def test_transform_fires_at_its_probability(name: str) -> None:
    settings, expected = ONLY[name]
    images, labels = _batch(4000)
    out, _ = augment(images.clone(), labels.clone(), [24, 24], settings, torch.Generator().manual_seed(1))
    fired = (out != images).flatten(1).any(1).float().mean().item()
    assert fired == pytest.approx(expected, abs=0.025)


def test_nothing_changes_when_every_transform_is_off() -> None:
    images, labels = _batch(16)
    out, out_labels = augment(images.clone(), labels.clone(), [24, 24], OFF, torch.Generator().manual_seed(0))
    assert torch.equal(out, images) and torch.equal(out_labels, labels)


@pytest.mark.parametrize("dim", [2, 3])
def test_spatial_transforms_keep_image_and_labels_aligned(dim: int) -> None:
    """The image is a copy of the labels: after rotation, scaling, cropping and mirroring they still agree."""
    size, patch = (40, [24] * dim)
    labels = torch.zeros(8, 1, *[size] * dim, dtype=torch.int16)
    labels[(slice(None), slice(None), *[slice(10, 30)] * dim)] = 1
    labels[(slice(None), slice(None), *[slice(16, 22)] * dim)] = 2
    images = labels.float()
    settings = dataclasses.replace(OFF, p_rotation=1.0, p_scaling=1.0, p_mirror=0.5,
                                   mirror_axes=tuple(range(dim)))
    out, out_labels = augment(images, labels, patch, settings, torch.Generator().manual_seed(3))
    assert out.shape == (8, 1, *patch) and out_labels.shape == (8, 1, *patch)
    agreement = (out.round().to(torch.int16) == out_labels).float().mean().item()
    assert agreement > 0.95
    assert set(out_labels.unique().tolist()) <= {0, 1, 2}


def test_same_seed_same_batch() -> None:
    images, labels = _batch(6)
    settings = AugmentationSettings(p_rotation=0.5, p_scaling=0.5, p_blur=0.5, mirror_axes=(0, 1))
    a = augment(images.clone(), labels.clone(), [16, 16], settings, torch.Generator().manual_seed(7))
    b = augment(images.clone(), labels.clone(), [16, 16], settings, torch.Generator().manual_seed(7))
    c = augment(images.clone(), labels.clone(), [16, 16], settings, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])


def test_outside_mask_is_zeroed_and_ignored_label_becomes_background() -> None:
    images, labels = _batch(2)
    labels[:, :, :, :3] = -1
    out, out_labels = augment(images, labels, [24, 24], dataclasses.replace(OFF, mask_channels=(0,)),
                              torch.Generator().manual_seed(0))
    assert torch.all(out[:, :, :, :3] == 0) and torch.all(out[:, :, :, 3:] != 0)
    assert out_labels.min() == 0


def test_dummy_2d_leaves_the_slice_axis_alone() -> None:
    labels = torch.zeros(4, 1, 6, 32, 32, dtype=torch.int16)
    labels[:, :, 2:4, 8:24, 8:24] = 1
    settings = dataclasses.replace(OFF, p_rotation=1.0, p_scaling=1.0, dummy_2d=True, rotation=(-3.1, 3.1))
    _, out = augment(labels.float(), labels, [6, 24, 24], settings, torch.Generator().manual_seed(0))
    assert torch.all(out[:, :, [0, 1, 4, 5]] == 0)  # foreground slices stay where they were


def test_deep_supervision_targets() -> None:
    labels = torch.randint(0, 3, (2, 1, 16, 32, 32), dtype=torch.int16)
    targets = deep_supervision_targets(labels, [[1, 1, 1], [1, 0.5, 0.5], [0.5, 0.25, 0.25]])
    assert [tuple(t.shape[2:]) for t in targets] == [(16, 32, 32), (16, 16, 16), (8, 8, 8)]
    assert targets[0] is labels and targets[1].dtype == torch.int16


def test_mirroring_is_an_exact_flip() -> None:
    images, labels = _batch(3)
    settings = dataclasses.replace(OFF, p_mirror=1.0)
    out, out_labels = augment(images.clone(), labels.clone(), [24, 24], settings, torch.Generator().manual_seed(0))
    assert torch.equal(out, images.flip(2).flip(3)) and torch.equal(out_labels, labels.flip(2).flip(3))


def test_labels_to_regions() -> None:
    from nnlight.data.augmentation import labels_to_regions

    labels = torch.tensor([0, 1, 2, 3], dtype=torch.int16).view(1, 1, 4)
    regions = labels_to_regions(labels, [[1, 2, 3], [2, 3], [3]])  # whole tumour, tumour core, enhancing
    assert regions.tolist() == [[[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1]]]
