from __future__ import annotations

import numpy as np
import pytest

from nnlight.planning.rules import compute_new_shape
from nnlight.preprocessing.resampling import (
    resample_image,
    resample_segmentation,
    separate_z_axis,
)


def test_separate_z_rule() -> None:
    assert separate_z_axis([4.0, 0.8, 0.8], [1.0, 1.0, 1.0]) == 0  # current spacing anisotropic
    assert separate_z_axis([1.0, 1.0, 1.0], [1.0, 1.0, 5.0]) == 2  # else the new one
    assert separate_z_axis([1.0, 1.0, 1.2], [1.0, 1.0, 1.0]) is None
    assert separate_z_axis([0.24, 1.25, 1.25], [1.0, 1.0, 1.0]) is None  # two tied coarse axes


def test_identity_when_shape_is_unchanged() -> None:
    data = np.random.default_rng(0).normal(size=(2, 5, 6, 7)).astype(np.float32)
    np.testing.assert_array_equal(resample_image(data, (5, 6, 7), [1, 1, 1], [1, 1, 1]), data)


def test_anisotropic_resampling_keeps_slices_along_z() -> None:
    """Separate z with order_z 0: every output slice is a (resampled) copy of one input slice."""
    data = np.zeros((1, 4, 10, 10), np.float32)
    for z in range(4):
        data[0, z] = z + 1
    out = resample_image(data, (8, 15, 15), [4.0, 1.0, 1.0], [2.0, 2 / 3, 2 / 3])
    assert out.shape == (1, 8, 15, 15)
    np.testing.assert_allclose(out[0, :, 7, 7], [1, 1, 2, 2, 3, 3, 4, 4], atol=1e-6)


@pytest.mark.parametrize("spacings", [([1.0, 1.0, 1.0], [0.7, 1.3, 1.1]), ([5.0, 0.8, 0.8], [2.5, 1.0, 1.6])])
def test_segmentation_round_trip_restores_geometry(spacings: tuple) -> None:
    current, target = spacings
    seg = np.zeros((1, 12, 40, 36), np.int8)
    seg[0, 3:9, 10:30, 8:28] = 1
    seg[0, 5:7, 15:25, 12:20] = 2
    seg[0, :, :3] = -1
    shape = compute_new_shape(seg.shape[1:], current, target)
    there = resample_segmentation(seg, shape, current, target)
    assert there.shape == (1, *shape) and set(np.unique(there)) <= {-1, 0, 1, 2}
    back = resample_segmentation(there, seg.shape[1:], target, current)
    assert back.shape == seg.shape
    for label in (1, 2):
        a, b = seg == label, back == label
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.9


def test_image_resampling_stays_in_input_range() -> None:
    data = np.zeros((1, 8, 8, 8), np.float32)
    data[0, 4:, 4:, 4:] = 1.0  # a step edge: cubic splines overshoot, skimage's resize clips
    out = resample_image(data, (13, 13, 13), [1, 1, 1], [0.6, 0.6, 0.6])
    assert out.min() >= 0.0 and out.max() <= 1.0
