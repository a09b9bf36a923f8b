from __future__ import annotations

import numpy as np
import pytest

from nnlight.preprocessing.normalization import normalize

STATS = {"0": {"mean": 50.0, "std": 10.0, "percentile_00_5": 20.0, "percentile_99_5": 90.0}}


def test_zscore_with_and_without_mask() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(100, 20, (1, 6, 7, 8)).astype(np.float32)
    seg = np.zeros((1, 6, 7, 8), np.int8)
    seg[0, :2] = -1
    image[0, :2] = 0.0
    plain = normalize(image, seg, ["ZScoreNormalization"], [False], {})
    assert plain.mean() == pytest.approx(0, abs=1e-5) and plain.std() == pytest.approx(1, abs=1e-4)
    masked = normalize(image, seg, ["ZScoreNormalization"], [True], {})
    inside = masked[0][seg[0] >= 0]
    assert inside.mean() == pytest.approx(0, abs=1e-5) and inside.std() == pytest.approx(1, abs=1e-4)
    assert np.all(masked[0][seg[0] < 0] == 0)


def test_ct_uses_dataset_statistics() -> None:
    image = np.array([[[[0.0, 20.0, 50.0, 100.0]]]], np.float32)
    out = normalize(image, None, ["CTNormalization"], [False], STATS)
    np.testing.assert_allclose(out.ravel(), [(20 - 50) / 10, (20 - 50) / 10, 0.0, (90 - 50) / 10])


def test_rescale_rgb_and_none() -> None:
    image = np.array([[[[10.0, 20.0, 30.0]]], [[[0.0, 51.0, 255.0]]], [[[-3.0, 0.0, 7.0]]]], np.float32)
    out = normalize(image, None, ["RescaleTo01Normalization", "RGBTo01Normalization", "NoNormalization"],
                    [False] * 3, {})
    np.testing.assert_allclose(out[0].ravel(), [0, 0.5, 1])
    np.testing.assert_allclose(out[1].ravel(), [0, 0.2, 1])
    np.testing.assert_allclose(out[2].ravel(), [-3, 0, 7])
    assert out.dtype == np.float32
