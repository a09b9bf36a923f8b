"""Patch sampling: nnU-Net's oversampling semantics, padding, the 2d slab case and the DDP batch split."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from nnlight.data.sampling import (
    PatchSampler,
    crop_and_pad,
    forced_foreground,
    initial_patch_size,
    rank_batch_and_oversampling,
    spatial_augmentation_geometry,
)
from nnlight.preprocessing.case import PreprocessedCase, sample_class_locations
from nnlight.preprocessing.store import write_case


@pytest.fixture(scope="module")
def sparse_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Cases of 48^3 whose only foreground is a 3^3 cube near a corner (label 1) and one voxel of label 2."""
    folder = tmp_path_factory.mktemp("store")
    for i in range(4):
        seg = np.zeros((1, 48, 48, 48), np.int8)
        seg[0, 2 + i:5 + i, 40:43, 3:6] = 1
        seg[0, 30, 30, 30 + i] = 2
        data = np.random.default_rng(i).normal(size=(2, 48, 48, 48)).astype(np.float32)
        write_case(folder, f"case_{i}", PreprocessedCase(data, seg, {}, sample_class_locations(seg, [1, 2])), {})
    return folder


def _has_foreground(labels: np.ndarray) -> np.ndarray:
    return (labels > 0).reshape(len(labels), -1).any(1)


def test_forced_samples_are_the_last_of_each_batch() -> None:
    assert [forced_foreground(j, 2, 0.33) for j in range(2)] == [False, True]
    assert [forced_foreground(j, 9, 0.33) for j in range(9)] == [False] * 6 + [True] * 3
    assert not any(forced_foreground(j, 4, 0.0) for j in range(4))


def test_foreground_fraction_follows_oversampling(sparse_store: Path) -> None:
    cases = [f"case_{i}" for i in range(4)]
    random_only = PatchSampler(sparse_store, cases, [16, 16, 16], batch_size=3, oversample_foreground=0.0, seed=0)
    oversampled = PatchSampler(sparse_store, cases, [16, 16, 16], batch_size=3, oversample_foreground=0.33, seed=1)
    draws = 300
    base = np.mean([_has_foreground(random_only.sample()[1]).mean() for _ in range(draws)])
    per_position = np.mean([_has_foreground(oversampled.sample()[1]) for _ in range(draws)], axis=0)
    assert per_position[2] == 1.0  # the forced sample always holds foreground
    expected = 1 / 3 + 2 / 3 * base  # one forced sample in three, the others like random ones
    assert per_position.mean() == pytest.approx(expected, abs=0.05)
    assert base < 0.5  # the test data really is sparse, so oversampling has something to do


def test_patch_larger_than_case_is_padded(sparse_store: Path) -> None:
    sampler = PatchSampler(sparse_store, ["case_0"], [64, 20, 20], batch_size=2, oversample_foreground=0.0, seed=0)
    images, labels, keys = sampler.sample()
    assert images.shape == (2, 2, 64, 20, 20) and labels.shape == (2, 1, 64, 20, 20)
    assert keys == ["case_0", "case_0"]
    assert np.all(labels[:, :, :8] == -1) and np.all(images[:, :, :8] == 0)  # 16 padding voxels, split evenly


def test_2d_patches_come_from_single_slices(sparse_store: Path) -> None:
    sampler = PatchSampler(sparse_store, ["case_1"], [32, 32], batch_size=4, oversample_foreground=1.0, seed=0)
    images, labels, _ = sampler.sample()
    assert images.shape == (4, 2, 32, 32) and labels.shape == (4, 1, 32, 32)
    assert _has_foreground(labels).all()


def test_crop_and_pad() -> None:
    array = np.arange(2 * 4 * 5).reshape(2, 4, 5)
    out = crop_and_pad(array, [-1, 3], [3, 4], -7)
    np.testing.assert_array_equal(out[0], [[-7, -7, -7, -7], [3, 4, -7, -7], [8, 9, -7, -7]])


def test_ddp_split_keeps_global_oversampling() -> None:
    assert [rank_batch_and_oversampling(5, 2, r, 0.33) for r in range(2)] == [(3, 0.0), (2, 1.0)]
    assert [rank_batch_and_oversampling(2, 2, r, 0.33) for r in range(2)] == [(1, 0.0), (1, 1.0)]
    sizes_and_p = [rank_batch_and_oversampling(9, 2, r, 0.33) for r in range(2)]
    assert sizes_and_p[0] == (5, 0.0) and sizes_and_p[1][0] == 4
    forced = sum(round(n * p) for n, p in sizes_and_p)
    assert forced == sum(forced_foreground(j, 9, 0.33) for j in range(9))
    with pytest.raises(ValueError):
        rank_batch_and_oversampling(1, 2, 0, 0.33)


def test_initial_patch_size_matches_nnunet() -> None:
    """Values of nnU-Net's get_patch_size (nnunetv2 2.8.1, computed once in a separate environment)."""
    assert initial_patch_size([96, 160, 160], math.radians(30)) == [191, 257, 219]
    assert initial_patch_size([40, 56, 40], math.radians(30)) == [73, 80, 64]
    assert initial_patch_size([640, 640], math.radians(180)) == [752, 752]
    assert initial_patch_size([512, 128], math.radians(15)) == [620, 150]
    geometry = spatial_augmentation_geometry([20, 320, 256])
    assert geometry.dummy_2d and geometry.initial_patch_size[0] == 20
    assert spatial_augmentation_geometry([512, 128]).rotation[1] == pytest.approx(math.radians(15))
