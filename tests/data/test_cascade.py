"""The cascade's input channels: one-hot previous segmentation, its augmentation, and patches that carry it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation

from nnlight.data.cascade import _dilate, augment_previous_stage, one_hot_previous, structuring_element
from nnlight.data.sampling import PatchSampler


def test_one_hot_covers_foreground_labels_only() -> None:
    seg = torch.tensor([[[0, 1, 2, -1]]])
    assert one_hot_previous(seg, (1, 2)).tolist() == [[[0, 1, 0, 0], [0, 0, 1, 0]]]


# voxel counts and shapes of skimage 0.26's disk/ball (what batchgeneratorsv2 uses), fractional radii included
@pytest.mark.parametrize(("radius", "dim", "voxels", "edge"), [(1, 2, 5, 3), (2.5, 2, 16, 6), (1, 3, 7, 3),
                                                               (2.5, 3, 56, 6), (3.7, 3, 160, 8)])
def test_structuring_elements_equal_skimages(radius: float, dim: int, voxels: int, edge: int) -> None:
    strel = structuring_element(radius, dim)
    assert int(strel.sum()) == voxels and list(strel.shape) == [edge] * dim


def test_dilation_equals_scipys_for_a_ball() -> None:
    mask = torch.from_numpy(np.random.default_rng(0).random((12, 14, 16)) > 0.97)
    strel = structuring_element(2, 3)
    assert torch.equal(_dilate(mask, strel), torch.from_numpy(binary_dilation(mask.numpy(), strel.numpy())))


def test_augmentation_keeps_channels_binary_and_exclusive_and_changes_some_samples() -> None:
    seg = torch.zeros((40, 1, 10, 16, 16), dtype=torch.int16)
    seg[:, :, 2:8, 3:9, 3:9] = 1
    seg[:, :, 3:6, 10:14, 10:14] = 2
    seg[:, :, 7, 12, 2] = 2  # a small extra component the removal may pick
    before = one_hot_previous(seg, (1, 2))
    after = augment_previous_stage(before.clone(), torch.Generator().manual_seed(3))
    assert set(after.unique().tolist()) <= {0.0, 1.0}
    assert after.sum(1).max() <= 1  # a voxel a dilation adds leaves the other label
    changed = (after != before).flatten(1).any(1).float().mean()
    assert 0.2 < changed < 0.8  # P(binary op or component removal) = 1 - 0.6 * 0.8 minus no-ops, 40 samples


def test_patches_carry_the_previous_segmentation_as_a_second_label_channel(tmp_path: Path) -> None:
    store, previous = tmp_path / "store", tmp_path / "previous"
    store.mkdir(), previous.mkdir()
    rng = np.random.default_rng(0)
    np.save(store / "a.npy", rng.random((1, 12, 20, 20), dtype=np.float32))
    np.save(store / "a_seg.npy", (rng.random((1, 12, 20, 20)) > 0.5).astype(np.int8))
    np.savez(store / "a_locations.npz", **{"1": np.argwhere(np.load(store / "a_seg.npy") == 1)})
    prev = rng.integers(0, 3, (1, 12, 20, 20)).astype(np.int8)
    np.save(previous / "a.npy", prev)
    sampler = PatchSampler(store, ["a"], [8, 16, 16], 2, 0.0, seed=1, previous_stage=previous)
    images, labels, _ = sampler.sample()
    assert labels.shape == (2, 2, 8, 16, 16)
    data = np.load(store / "a.npy")
    for b in range(2):  # the same crop of image, labels and previous segmentation
        z, y, x = (int(v[0]) for v in np.nonzero(np.all(
            np.lib.stride_tricks.sliding_window_view(data[0], (8, 16, 16)) == images[b, 0], axis=(3, 4, 5))))
        assert np.array_equal(labels[b, 1], prev[0, z:z + 8, y:y + 16, x:x + 16])
