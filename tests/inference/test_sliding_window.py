"""Sliding window: equals a full-image pass where the tiles allow it; mirroring TTA is exact; nnU-Net's steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nnlight.inference.sliding_window import gaussian_importance, sliding_window_predict, window_steps


def _pointwise(channels: int = 2, classes: int = 3, dim: int = 3) -> nn.Module:
    """A 1x1 conv: translation-equivariant and flip-symmetric, so any tiling must reproduce the full pass."""
    torch.manual_seed(0)
    return (nn.Conv3d if dim == 3 else nn.Conv2d)(channels, classes, 1).eval()


def test_steps_match_nnunet() -> None:
    """Values of nnU-Net's compute_steps_for_sliding_window (nnunetv2 2.8.1)."""
    assert window_steps([100, 64], [64, 64], 0.5) == [[0, 18, 36], [0]]
    assert window_steps([155, 240, 240], [96, 160, 160], 0.5) == [[0, 30, 59], [0, 80], [0, 80]]
    assert window_steps([50], [50], 0.5) == [[0]]


def test_gaussian_is_peaked_and_positive() -> None:
    g = gaussian_importance([9, 9])
    assert g[4, 4] == pytest.approx(10.0) and g.min() > 0 and g[0, 0] < g[2, 2] < g[4, 4]


def test_tile_covering_the_image_equals_a_full_forward_pass() -> None:
    net = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 3, 3, padding=1)).eval()
    image = torch.randn(2, 8, 12, 10)
    out = sliding_window_predict(net, image, [8, 12, 10], num_classes=3)
    torch.testing.assert_close(out, net(image[None])[0])


def test_overlapping_tiles_reproduce_an_equivariant_network() -> None:
    net = _pointwise()
    image = torch.randn(2, 21, 30, 17)
    out = sliding_window_predict(net, image, [8, 16, 8], num_classes=3, tile_batch=3)
    torch.testing.assert_close(out, net(image[None])[0], rtol=1e-5, atol=1e-5)


def test_image_smaller_than_the_tile_is_padded_and_cropped_back() -> None:
    net = _pointwise()
    image = torch.randn(2, 5, 6, 7)
    out = sliding_window_predict(net, image, [8, 8, 8], num_classes=3)
    assert out.shape == (3, 5, 6, 7)
    torch.testing.assert_close(out, net(image[None])[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_scores_of_an_image_thinner_than_the_tile_equal_those_of_the_padded_image(dtype: torch.dtype) -> None:
    """Scores are kept for the image alone (not its padding), and equal the padded image's scores cropped back: a
    network that looks at neighbours, the image thinner than the tile on one axis and several tiles long on another."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 3, 3, padding=1)).eval()
    image = torch.randn(2, 5, 30, 7)
    padded = torch.nn.functional.pad(image, [0, 1, 0, 0, 1, 2])  # to 8 x 30 x 8, centred as the sliding window pads
    expected = sliding_window_predict(net, padded, [8, 8, 8], num_classes=3, scores_dtype=dtype)[:, 1:6, :, 0:7]
    out = sliding_window_predict(net, image, [8, 8, 8], num_classes=3, scores_dtype=dtype)
    assert out.shape == (3, 5, 30, 7) and out.is_contiguous()
    torch.testing.assert_close(out.float(), expected.float(), rtol=1e-5, atol=1e-5 if dtype == torch.float32 else 2e-3)


def test_mirroring_is_exact_on_a_symmetric_network_and_averages_flips_otherwise() -> None:
    image = torch.randn(2, 8, 8, 8)
    symmetric = _pointwise()
    torch.testing.assert_close(sliding_window_predict(symmetric, image, [8, 8, 8], 3, mirror_axes=(0, 1, 2)),
                               symmetric(image[None])[0], rtol=1e-5, atol=1e-5)

    def shifted(x: torch.Tensor) -> torch.Tensor:  # not flip-symmetric: looks one voxel ahead along the last axis
        return torch.roll(x[:, :1], shifts=1, dims=-1)

    out = sliding_window_predict(shifted, image, [8, 8, 8], 1, use_gaussian=False, mirror_axes=(2,))
    expected = (shifted(image[None]) + torch.flip(shifted(torch.flip(image[None], [4])), [4])) / 2
    torch.testing.assert_close(out, expected[0])


def test_2d_tiles_predict_a_volume_slice_by_slice() -> None:
    net = _pointwise(dim=2)
    volume = torch.randn(2, 4, 20, 18)
    out = sliding_window_predict(net, volume, [16, 16], num_classes=3, mirror_axes=(0, 1))
    expected = torch.stack([net(volume[:, z][None])[0] for z in range(4)], dim=1)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert np.isfinite(out.numpy()).all()


@pytest.mark.parametrize("dtype, tolerance", [(torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
def test_scores_summed_in_half_precision_stay_close_to_float32(dtype: torch.dtype, tolerance: float) -> None:
    net = _pointwise(classes=5)
    image = torch.randn(2, 21, 30, 17)
    exact = sliding_window_predict(net, image, [8, 16, 8], num_classes=5)
    half = sliding_window_predict(net, image, [8, 16, 8], num_classes=5, scores_dtype=dtype)
    assert half.dtype == dtype and half.element_size() == 2  # half the memory of the accumulator
    assert (half.float() - exact).abs().max() <= tolerance * exact.abs().max()
    agree = (half.float().argmax(0) == exact.argmax(0)).float().mean()
    assert agree > 0.99
