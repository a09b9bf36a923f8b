"""Export returns exactly the input's geometry, whatever its direction, spacing and origin."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from nnlight.inference.export import geometry_from_properties, segmentation_in_original_space, write_segmentation
from nnlight.preprocessing.case import PreprocessingSettings, preprocess_case
from nnlight.raw.io import read_images, read_seg


def _write(array: np.ndarray, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.8, 0.7, 4.0))  # anisotropic: z is 5x coarser
    image.SetOrigin((-123.25, 47.5, 901.125))
    image.SetDirection((0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0))  # rotated and flipped
    sitk.WriteImage(image, str(path))


def test_export_restores_labels_and_exact_geometry(tmp_path: Path) -> None:
    labels = np.zeros((10, 40, 36), np.uint8)
    labels[3:8, 10:30, 8:24] = 1
    labels[4:6, 15:22, 12:18] = 2
    image = np.where(labels > 0, 100.0, 0.0).astype(np.float32)
    image[1:9, 4:36, 3:33] += 20.0
    _write(image, tmp_path / "case_0000.nii.gz")
    _write(labels, tmp_path / "case.nii.gz")

    data, geometry = read_images([tmp_path / "case_0000.nii.gz"], "sitk")
    seg, _ = read_seg(tmp_path / "case.nii.gz", "sitk")
    settings = PreprocessingSettings(transpose_forward=[0, 1, 2], target_spacing=[2.0, 0.5, 0.5],
                                     normalization_schemes=["ZScoreNormalization"], use_mask_for_norm=[False],
                                     intensity_properties={}, foreground_classes=[1, 2])
    case = preprocess_case(data, seg, geometry.spacing, settings)
    properties = {**case.properties, "original_spacing": list(geometry.spacing),
                  "sitk_spacing": list(geometry.sitk_spacing), "sitk_origin": list(geometry.sitk_origin),
                  "sitk_direction": list(geometry.sitk_direction), "is_2d": False}
    # a perfect network: logits that are the one-hot preprocessed labels
    logits = F.one_hot(torch.from_numpy(case.seg[0].clip(0)).long(), 3).movedim(-1, 0).float() * 10
    restored = segmentation_in_original_space(logits, properties, [0, 1, 2])
    assert restored.shape == labels.shape
    for label in (1, 2):
        a, b = labels == label, restored == label
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.95

    out = tmp_path / "prediction.nii.gz"
    write_segmentation(restored, out, geometry_from_properties(properties))
    written, reference = sitk.ReadImage(str(out)), sitk.ReadImage(str(tmp_path / "case.nii.gz"))
    assert written.GetSize() == reference.GetSize()
    assert written.GetSpacing() == reference.GetSpacing()
    assert written.GetOrigin() == reference.GetOrigin()
    assert written.GetDirection() == reference.GetDirection()
    assert not list(tmp_path.glob(".*tmp*"))
