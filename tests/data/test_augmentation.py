"""Device augmentation: each transform fires at its probability, labels stay aligned, a seed fixes the result."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import median_filter as scipy_median

from nnlight.data.augmentation import (
    AugmentationSettings,
    augment,
    deep_supervision_targets,
    spatial_augmentation_geometry,
    spatial_transform,
)
from nnlight.data.transforms import median_filter

OFF = AugmentationSettings(p_rotation=0, p_scaling=0, p_noise=0, p_blur=0, p_brightness=0, p_contrast=0,
                           p_low_resolution=0, p_gamma_inverted=0, p_gamma=0, p_mirror=0)
DEFAULT = AugmentationSettings()

# transform -> (settings with only it enabled at nnU-Net's probability, expected fraction of changed samples)
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
    # DA5's transforms at DA5's probabilities (one channel: sample probability x channel probability)
    "median": (dataclasses.replace(OFF, p_blur=0.2, p_median_instead_of_blur=1.0, median_size=(3, 4)), 0.2 * 0.5),
    "additive_brightness": (dataclasses.replace(OFF, p_additive_brightness=0.1), 0.1 * 0.5),
    "blank_rectangles": (dataclasses.replace(OFF, p_blank_rectangles=0.4), 0.4 * 0.5),
    "brightness_gradient": (dataclasses.replace(OFF, p_brightness_gradient=0.3), 0.3 * 0.5),
    "local_gamma": (dataclasses.replace(OFF, p_local_gamma=0.3), 0.3 * 0.5),
    "sharpen": (dataclasses.replace(OFF, p_sharpen=0.2), 0.2 * 0.5),
    "rot90": (dataclasses.replace(OFF, p_rot90=0.5), 0.5 * 3 / 4),  # k = 0 of 0..3 leaves the patch as it is
    "transpose": (dataclasses.replace(OFF, p_transpose=0.5), 0.5 * 1 / 2),  # 2 axes: one of 2 orders is the same
}


def _batch(n: int, size: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 1, size, size, generator=g) * 2 + 5
    labels = torch.zeros(n, 1, size, size, dtype=torch.int16)
    labels[:, :, 6:14, 4:18] = 1
    return images, labels


def _augment(images: torch.Tensor, labels: torch.Tensor, patch: list[int], settings: AugmentationSettings,
             seed: int, mask_channels: tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    geometry = spatial_augmentation_geometry(patch, settings)
    return augment(images, labels, patch, settings, geometry, torch.Generator().manual_seed(seed), mask_channels)


@pytest.mark.parametrize("name", sorted(ONLY))
def test_transform_fires_at_its_probability(name: str) -> None:
    settings, expected = ONLY[name]
    images, labels = _batch(4000 if name not in ("median", "local_gamma", "brightness_gradient") else 1500)
    out, _ = _augment(images.clone(), labels.clone(), [24, 24], settings, 1)
    fired = (out != images).flatten(1).any(1).float().mean().item()
    assert fired == pytest.approx(expected, abs=0.03)


def test_nothing_changes_when_every_transform_is_off() -> None:
    images, labels = _batch(16)
    out, out_labels = _augment(images.clone(), labels.clone(), [24, 24], OFF, 0)
    assert torch.equal(out, images) and torch.equal(out_labels, labels)


@pytest.mark.parametrize("seg_interpolation", ["linear", "nearest"])
@pytest.mark.parametrize("dim", [2, 3])
def test_spatial_transforms_keep_image_and_labels_aligned(dim: int, seg_interpolation: str) -> None:
    """The image is a copy of the labels: after rotation, scaling, cropping and mirroring they still agree."""
    size, patch = (40, [24] * dim)
    labels = torch.zeros(8, 1, *[size] * dim, dtype=torch.int16)
    labels[(slice(None), slice(None), *[slice(10, 30)] * dim)] = 1
    labels[(slice(None), slice(None), *[slice(16, 22)] * dim)] = 2
    images = labels.float()
    settings = dataclasses.replace(OFF, p_rotation=1.0, p_scaling=1.0, p_mirror=0.5,
                                   seg_interpolation=seg_interpolation)  # type: ignore[arg-type]
    geometry = dataclasses.replace(spatial_augmentation_geometry(patch, settings), mirror_axes=tuple(range(dim)))
    out, out_labels = augment(images, labels, patch, settings, geometry, torch.Generator().manual_seed(3))
    assert out.shape == (8, 1, *patch) and out_labels.shape == (8, 1, *patch)
    agreement = (out.round().to(torch.int16) == out_labels).float().mean().item()
    assert agreement > 0.95
    assert set(out_labels.unique().tolist()) <= {0, 1, 2}


def test_labels_are_resampled_linearly_by_default_as_nnunet() -> None:
    """batchgeneratorsv2's default (mode_seg='bilinear'): each label's one-hot is interpolated, then arg-maxed.

    A one-voxel-wide line shifted by half a voxel: nearest keeps it (rounding picks a side), linear gives both
    neighbours 0.5 of the line and 0.5 of background, and the tie goes to the lower label (0) as in nnU-Net."""
    assert DEFAULT.seg_interpolation == "linear"
    labels = torch.zeros(1, 1, 9, 9, dtype=torch.int16)
    labels[:, :, :, 4] = 1
    grid = torch.nn.functional.affine_grid(torch.tensor([[[1.0, 0.0, 1 / 9], [0.0, 1.0, 0.0]]]), [1, 1, 9, 9],
                                           align_corners=False)  # x shifted by half a voxel
    from nnlight.data.augmentation import _resample_labels

    nearest = _resample_labels(labels, grid, "nearest")[0, 0, 4]
    linear = _resample_labels(labels, grid, "linear")[0, 0, 4]
    assert (nearest == 1).sum() >= 1 and (linear == 1).sum() == 0
    assert linear[-1] == -1  # sampled half outside the patch


def test_out_of_patch_voxels_become_minus_one_in_both_modes() -> None:
    labels = torch.ones(4, 1, 16, 16, dtype=torch.int16)
    for mode in ("linear", "nearest"):
        settings = dataclasses.replace(OFF, p_scaling=1.0, scaling=(1.4, 1.4), seg_interpolation=mode)
        geometry = dataclasses.replace(spatial_augmentation_geometry([16, 16], settings), initial_patch_size=[16, 16])
        _, out = spatial_transform(labels.float(), labels, [16, 16], settings, geometry, torch.Generator())
        assert out[:, 0, 0, 0].tolist() == [-1] * 4 and out[:, 0, 8, 8].tolist() == [1] * 4


def test_scaling_above_one_makes_objects_smaller() -> None:
    """batchgeneratorsv2's convention, which nnU-Net's ranges (0.7, 1.4) assume."""
    labels = torch.zeros(1, 1, 32, 32, dtype=torch.int16)
    labels[:, :, 8:24, 8:24] = 1
    settings = dataclasses.replace(OFF, p_scaling=1.0, scaling=(1.4, 1.4))
    geometry = spatial_augmentation_geometry([32, 32], settings)
    _, out = spatial_transform(labels.float(), labels, [32, 32], settings, geometry, torch.Generator())
    shrunk = (labels == 1).sum() / 1.4 ** 2  # 16 x 16 voxels become about 11.4 x 11.4
    assert 0.8 * shrunk < (out == 1).sum() < 1.2 * shrunk


def test_same_seed_same_batch() -> None:
    images, labels = _batch(6)
    settings = AugmentationSettings(p_rotation=0.5, p_scaling=0.5, p_blur=0.5)
    a = _augment(images.clone(), labels.clone(), [16, 16], settings, 7)
    b = _augment(images.clone(), labels.clone(), [16, 16], settings, 7)
    c = _augment(images.clone(), labels.clone(), [16, 16], settings, 8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])


def test_outside_mask_is_zeroed_and_ignored_label_becomes_background() -> None:
    images, labels = _batch(2)
    labels[:, :, :, :3] = -1
    out, out_labels = _augment(images, labels, [24, 24], OFF, 0, mask_channels=(0,))
    assert torch.all(out[:, :, :, :3] == 0) and torch.all(out[:, :, :, 3:] != 0)
    assert out_labels.min() == 0


def test_dummy_2d_leaves_the_slice_axis_alone() -> None:
    labels = torch.zeros(4, 1, 6, 32, 32, dtype=torch.int16)
    labels[:, :, 2:4, 8:24, 8:24] = 1
    settings = dataclasses.replace(OFF, p_rotation=1.0, p_scaling=1.0, dummy_2d=True, rotation_degrees=(-178, 178))
    _, out = _augment(labels.float(), labels, [6, 24, 24], settings, 0)
    assert torch.all(out[:, :, [0, 1, 4, 5]] == 0)  # foreground slices stay where they were


def test_user_rotation_and_dummy_2d_are_kept() -> None:
    """Set by the user, they are used; left at null, nnU-Net's rule decides."""
    auto = spatial_augmentation_geometry([20, 320, 256])
    assert auto.dummy_2d and auto.rotation[1] == pytest.approx(math.pi) and auto.initial_patch_size[0] == 20
    chosen = spatial_augmentation_geometry([20, 320, 256], AugmentationSettings(dummy_2d=False,
                                                                                rotation_degrees=(-10.0, 10.0)))
    assert not chosen.dummy_2d and chosen.rotation == pytest.approx((-math.radians(10), math.radians(10)))
    no_dummy = spatial_augmentation_geometry([20, 320, 256], AugmentationSettings(dummy_2d=False))
    assert no_dummy.rotation[1] == pytest.approx(math.radians(30))  # nnUNetTrainer_noDummy2DDA
    assert spatial_augmentation_geometry([512, 128]).rotation[1] == pytest.approx(math.radians(15))


def test_mirror_axes_are_image_axes_and_without_spatial_augmentation_the_patch_is_not_enlarged() -> None:
    assert spatial_augmentation_geometry([32, 32, 32]).mirror_axes == (0, 1, 2)
    assert spatial_augmentation_geometry([32, 32]).mirror_axes == (0, 1)  # y, x of the image
    only01 = AugmentationSettings(mirror_axes=(0, 1))  # nnUNetTrainer_onlyMirror01: 3D z, y; 2D y
    assert spatial_augmentation_geometry([32, 32, 32], only01).mirror_axes == (0, 1)
    assert spatial_augmentation_geometry([32, 32], only01).mirror_axes == (0,)
    assert spatial_augmentation_geometry([32, 32], AugmentationSettings(p_mirror=0)).mirror_axes == ()
    no_da = AugmentationSettings(p_rotation=0, p_scaling=0)
    assert spatial_augmentation_geometry([20, 40, 40], no_da).initial_patch_size == [20, 40, 40]
    assert spatial_augmentation_geometry([20, 40, 40]).initial_patch_size != [20, 40, 40]


@pytest.mark.parametrize(("shape", "size"), [((9, 11), 2), ((9, 11), 3), ((7, 8, 9), 4), ((6, 7, 5), 5)])
def test_median_filter_equals_scipy(shape: tuple[int, ...], size: int) -> None:
    image = torch.from_numpy(np.random.default_rng(0).normal(size=shape).astype(np.float32))
    expected = scipy_median(image.numpy(), size=size)
    assert np.allclose(median_filter(image, size, max_elements=300).numpy(), expected)


def test_da5_set_runs_on_a_3d_batch() -> None:
    labels = torch.zeros(4, 1, 24, 24, 24, dtype=torch.int16)
    labels[:, :, 6:18, 6:18, 6:18] = 1
    images = torch.randn(4, 2, 24, 24, 24) + labels
    from hydra import compose, initialize_config_dir

    from nnlight.pipeline.config_values import plain, typed
    from tests.conftest import REPO

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        settings = typed(AugmentationSettings, plain(compose(overrides=["+augmentation=da5"]).augmentation),
                         "augmentation")
    settings = dataclasses.replace(settings, p_rotation=1.0, p_blank_rectangles=1.0, p_sharpen=1.0)
    out, out_labels = _augment(images, labels, [16, 16, 16], settings, 0)
    assert out.shape == (4, 2, 16, 16, 16) and torch.isfinite(out).all()
    assert set(out_labels.unique().tolist()) <= {0, 1}


def test_deep_supervision_targets() -> None:
    labels = torch.randint(0, 3, (2, 1, 16, 32, 32), dtype=torch.int16)
    targets = deep_supervision_targets(labels, [[1, 1, 1], [1, 0.5, 0.5], [0.5, 0.25, 0.25]])
    assert [tuple(t.shape[2:]) for t in targets] == [(16, 32, 32), (16, 16, 16), (8, 8, 8)]
    assert targets[0] is labels and targets[1].dtype == torch.int16


def test_mirroring_is_an_exact_flip() -> None:
    images, labels = _batch(3)
    settings = dataclasses.replace(OFF, p_mirror=1.0)
    out, out_labels = _augment(images.clone(), labels.clone(), [24, 24], settings, 0)
    assert torch.equal(out, images.flip(2).flip(3)) and torch.equal(out_labels, labels.flip(2).flip(3))


def test_labels_to_regions() -> None:
    from nnlight.data.augmentation import labels_to_regions

    labels = torch.tensor([0, 1, 2, 3, 4], dtype=torch.int16).view(1, 1, 5)
    regions = labels_to_regions(labels, [[1, 2, 3], [2, 3], [3]])  # whole tumour, tumour core, enhancing
    assert regions.tolist() == [[[0, 1, 1, 1, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 0]]]
    with_ignore = labels_to_regions(labels, [[1, 2, 3]], ignore_label=4)  # nnU-Net: the ignore label last
    assert with_ignore.tolist() == [[[0, 1, 1, 1, 0], [0, 0, 0, 0, 1]]]
