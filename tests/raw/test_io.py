"""Readers by file ending keep the full geometry; 2D images follow nnU-Net's conventions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnlight.raw.io import ImageReadError, read_images, read_seg, reader_kind, write_seg


@pytest.mark.parametrize("ending", [".nii.gz", ".nrrd", ".mha"])
def test_3d_geometry_is_kept_and_written_back(tmp_path: Path, ending: str) -> None:
    array = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.8, 3.0))
    image.SetOrigin((-10.0, 5.5, 2.25))
    direction = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    image.SetDirection(direction)
    path = tmp_path / f"case_0000{ending}"
    sitk.WriteImage(image, str(path))

    data, geometry = read_images([path], reader_kind(ending))
    assert data.shape == (1, 5, 6, 7) and data.dtype == np.float32
    np.testing.assert_allclose(data[0], array)
    assert geometry.spacing == pytest.approx((3.0, 0.8, 0.7))  # numpy (z, y, x) order
    assert geometry.sitk_origin == pytest.approx((-10.0, 5.5, 2.25))
    assert geometry.sitk_direction == pytest.approx(direction)

    out = tmp_path / f"seg{ending}"
    write_seg((data[0] > 0).astype(np.uint8), out, geometry)
    seg, seg_geometry = read_seg(out, reader_kind(ending))
    assert seg.shape == (1, 5, 6, 7) and seg_geometry == geometry


def test_rgb_png_is_split_into_three_channels(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 255, size=(9, 11, 3), dtype=np.uint8)
    path = tmp_path / "photo_0000.png"
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(path))
    data, geometry = read_images([path], reader_kind(".png"))
    assert data.shape == (3, 1, 9, 11)
    np.testing.assert_array_equal(data[:, 0], np.moveaxis(rgb, -1, 0))
    assert geometry.spacing == (999.0, 1.0, 1.0) and geometry.is_2d


def test_2d_nifti_gets_dummy_first_spacing(tmp_path: Path) -> None:
    image = sitk.GetImageFromArray(np.zeros((8, 10), np.float32))
    image.SetSpacing((0.5, 0.25))
    path = tmp_path / "slice_0000.nii.gz"
    sitk.WriteImage(image, str(path))
    data, geometry = read_images([path], "sitk")
    assert data.shape == (1, 1, 8, 10)
    assert geometry.spacing == (999.0, 0.25, 0.5)


def test_channels_on_different_grids_are_rejected(tmp_path: Path) -> None:
    for i, spacing in enumerate([(1.0, 1.0, 1.0), (1.0, 1.0, 2.0)]):
        image = sitk.GetImageFromArray(np.zeros((3, 4, 5), np.float32))
        image.SetSpacing(spacing)
        sitk.WriteImage(image, str(tmp_path / f"c_{i:04d}.nii.gz"))
    with pytest.raises(ImageReadError, match=r"c_0001\.nii\.gz"):
        read_images([tmp_path / "c_0000.nii.gz", tmp_path / "c_0001.nii.gz"], "sitk")


def test_unknown_ending_is_rejected() -> None:
    with pytest.raises(ImageReadError, match=r"\.dcm"):
        reader_kind(".dcm")
