"""Patch sampling: nnU-Net's oversampling semantics, padding, the 2d slab case and the DDP batch split."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from nnlight.data.augmentation import initial_patch_size
from nnlight.data.sampling import (
    PatchSampler,
    batch_rate,
    crop_and_pad,
    forced_foreground,
    rank_batch_and_oversampling,
    rank_sampling,
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


def test_probabilistic_oversampling_forces_any_position(sparse_store: Path) -> None:
    """nnUNetTrainer_probabilisticOversampling: each sample independently, not the batch's last ones."""
    cases = [f"case_{i}" for i in range(4)]
    sampler = PatchSampler(sparse_store, cases, [16, 16, 16], batch_size=2, oversample_foreground=1.0, seed=0,
                           probabilistic=True)
    assert all(_has_foreground(sampler.sample()[1]).all() for _ in range(20))
    half = PatchSampler(sparse_store, cases, [16, 16, 16], batch_size=2, oversample_foreground=0.5, seed=1,
                        probabilistic=True)
    per_position = np.mean([_has_foreground(half.sample()[1]) for _ in range(300)], axis=0)
    assert per_position[0] > 0.5 and per_position[1] > 0.5  # the first sample is forced too, sometimes
    assert per_position[0] == pytest.approx(per_position[1], abs=0.12)


def test_oversampling_modes_give_each_rank_its_probability() -> None:
    assert batch_rate(2, 0.33) == 0.5 and batch_rate(9, 0.33) == pytest.approx(1 / 3)
    assert rank_sampling(5, 2, 1, 0.33, "last_in_batch") == rank_batch_and_oversampling(5, 2, 1, 0.33) == (2, 1.0)
    assert rank_sampling(2, 1, 0, 0.33, "random") == (2, 0.33)
    assert rank_sampling(2, 1, 0, 0.33, "random_at_batch_rate") == (2, 0.5)
    assert rank_sampling(4, 2, 1, 0.1, "random") == (2, 0.1)


def test_with_an_ignore_label_patches_centre_on_annotated_voxels(tmp_path: Path) -> None:
    """nnU-Net: unforced patches of a sparsely annotated case are centred on a voxel that is not ignored."""
    seg = np.full((1, 64, 64, 64), 3, np.int8)  # 3 = ignore everywhere ...
    seg[0, 50:54, 50:54, 50:54] = 0  # ... except a small annotated block of background
    data = np.zeros((1, 64, 64, 64), np.float32)
    annotated = (-1, 0, 1)
    write_case(tmp_path, "case", PreprocessedCase(data, seg, {}, sample_class_locations(seg, [1, annotated])), {})
    sampler = PatchSampler(tmp_path, ["case"], [8, 8, 8], batch_size=2, oversample_foreground=0.0, seed=0,
                           annotated_key="-1,0,1")
    for _ in range(10):
        labels = sampler.sample()[1]
        assert ((labels == 0).reshape(2, -1).any(1)).all()  # every patch sees annotated voxels
