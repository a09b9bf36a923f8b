"""Readers by file ending keep the full geometry; 2D images follow nnU-Net's conventions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnlight.raw import io as io_module
from nnlight.raw.io import (
    Geometry,
    ImageFormat,
    ImageReadError,
    image_format,
    read_images,
    read_seg,
    register,
    write_image,
    write_seg,
)

GEOMETRY = Geometry((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
                    False)


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

    data, geometry = read_images([path], image_format(ending))
    assert data.shape == (1, 5, 6, 7) and data.dtype == np.float32
    np.testing.assert_allclose(data[0], array)
    assert geometry.spacing == pytest.approx((3.0, 0.8, 0.7))  # numpy (z, y, x) order
    assert geometry.sitk_origin == pytest.approx((-10.0, 5.5, 2.25))
    assert geometry.sitk_direction == pytest.approx(direction)

    out = tmp_path / f"seg{ending}"
    write_seg((data[0] > 0).astype(np.uint8), out, geometry)
    seg, seg_geometry = read_seg(out, image_format(ending))
    assert seg.shape == (1, 5, 6, 7) and seg_geometry == geometry


def test_rgb_png_is_split_into_three_channels(tmp_path: Path) -> None:
    rgb = np.random.default_rng(1).integers(0, 255, size=(9, 11, 3), dtype=np.uint8)
    path = tmp_path / "photo_0000.png"
    sitk.WriteImage(sitk.GetImageFromArray(rgb, isVector=True), str(path))
    data, geometry = read_images([path], image_format(".png"))
    assert data.shape == (3, 1, 9, 11)
    np.testing.assert_array_equal(data[:, 0], np.moveaxis(rgb, -1, 0))
    assert geometry.spacing == (999.0, 1.0, 1.0) and geometry.is_2d


def test_2d_nifti_gets_dummy_first_spacing(tmp_path: Path) -> None:
    image = sitk.GetImageFromArray(np.zeros((8, 10), np.float32))
    image.SetSpacing((0.5, 0.25))
    path = tmp_path / "slice_0000.nii.gz"
    sitk.WriteImage(image, str(path))
    data, geometry = read_images([path], image_format(".nii.gz"))
    assert data.shape == (1, 1, 8, 10)
    assert geometry.spacing == (999.0, 0.25, 0.5)


def test_channels_on_different_grids_are_rejected(tmp_path: Path) -> None:
    for i, spacing in enumerate([(1.0, 1.0, 1.0), (1.0, 1.0, 2.0)]):
        image = sitk.GetImageFromArray(np.zeros((3, 4, 5), np.float32))
        image.SetSpacing(spacing)
        sitk.WriteImage(image, str(tmp_path / f"c_{i:04d}.nii.gz"))
    with pytest.raises(ImageReadError, match=r"c_0001\.nii\.gz"):
        read_images([tmp_path / "c_0000.nii.gz", tmp_path / "c_0001.nii.gz"], image_format(".nii.gz"))


def test_unknown_ending_is_rejected() -> None:
    with pytest.raises(ImageReadError, match=r"\.dcm"):
        image_format(".dcm")


class NpyFormat(ImageFormat):
    """A format of the test's own, to show that a new format is one class: numpy arrays ``(z, y, x)`` in
    ``.npyimg`` files, 1 mm voxels."""

    name = "NpyImageIO"
    endings = (".npyimg",)

    def read(self, path: Path) -> tuple[np.ndarray, Geometry]:
        with path.open("rb") as f:
            array = np.load(f, allow_pickle=False)
        return array[None], GEOMETRY

    def write(self, array: np.ndarray, path: Path, geometry: Geometry) -> None:
        with path.open("wb") as f:
            np.save(f, np.asarray(array))


def test_a_new_format_is_one_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Registered, the format reads and writes a dataset through every stage: verify, fingerprint, plan,
    preprocess, and a segmentation written in it verifies."""
    from nnlight.fingerprint import compute_fingerprint
    from nnlight.inference.export import write_segmentation
    from nnlight.planning import PlannerSettings, plan_experiment
    from nnlight.preprocessing.preprocess import preprocess_dataset
    from nnlight.raw.dataset import require_raw_dataset
    from nnlight.raw.synthetic import synthetic_case

    monkeypatch.setattr(io_module, "_FORMATS", list(io_module._FORMATS))  # registered for this test only
    register(NpyFormat)
    folder = tmp_path / "Dataset950_Npy"
    rng = np.random.default_rng(0)
    for sub in ("imagesTr", "labelsTr"):
        (folder / sub).mkdir(parents=True)
    for i in range(3):
        images, label = synthetic_case((12, 24, 20), 1, rng)
        write_image(images[0], folder / "imagesTr" / f"c{i}_0000.npyimg", GEOMETRY)
        write_seg(label, folder / "labelsTr" / f"c{i}.npyimg", GEOMETRY)
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"}, "labels": {
        "background": 0, "a": 1, "b": 2}, "numTraining": 3, "file_ending": ".npyimg"}))
    dataset = require_raw_dataset(folder)
    assert isinstance(dataset.image_format, NpyFormat)
    plans = plan_experiment(compute_fingerprint(dataset, 0, sample_budget=1e4), dataset.dataset_json,
                            PlannerSettings(), dataset.name)
    assert plans.image_reader_writer == "NpyImageIO"
    preprocess_dataset(dataset, plans, tmp_path / "preprocessed", num_workers=0, configurations=["3d_fullres"])
    assert len(list((tmp_path / "preprocessed" / dataset.name).rglob("c*_seg.npy"))) == 3
    out = tmp_path / "c0_prediction.npyimg"
    write_segmentation(np.ones((12, 24, 20), np.uint8), out, GEOMETRY)
    assert read_seg(out, image_format(".npyimg"))[0].shape == (1, 12, 24, 20)
