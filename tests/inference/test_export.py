"""Export returns exactly the input's geometry, whatever its direction, spacing and origin, and the same labels
whether the classes are resampled all at once or a few at a time."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from nnlight.inference.export import (
    geometry_from_properties,
    probabilities_in_original_space,
    scores_to_segmentation,
    segmentation_in_original_space,
    streamed_segmentation,
    write_segmentation,
    written_completely,
)
from nnlight.preprocessing.case import PreprocessingSettings, preprocess_case
from nnlight.preprocessing.resampling import resample_logits
from nnlight.raw.io import image_format, read_images, read_seg


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

    data, geometry = read_images([tmp_path / "case_0000.nii.gz"], image_format(".nii.gz"))
    seg, _ = read_seg(tmp_path / "case.nii.gz", image_format(".nii.gz"))
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


@pytest.mark.parametrize("shape, new_shape, current, target", [
    ((20, 30, 28), (50, 61, 57), (0.8, 0.7, 0.7), (2.0, 1.5, 1.5)),  # trilinear
    ((10, 30, 28), (40, 61, 57), (1.0, 0.7, 0.7), (4.0, 1.5, 1.5)),  # separate z (anisotropic)
    ((1, 30, 28), (1, 61, 57), (999.0, 0.7, 0.7), (999.0, 1.5, 1.5)),  # a 2D image
], ids=["3d", "separate-z", "2d"])
def test_resampling_a_few_classes_at_a_time_gives_every_voxel_the_same_label(shape, new_shape, current, target
                                                                             ) -> None:
    torch.manual_seed(0)
    scores = torch.randn(13, *shape)
    scores[5] = scores[4]  # exact ties go to the first class, as argmax does
    resample = partial(resample_logits, new_shape=new_shape, current_spacing=target, new_spacing=current)
    everything = scores_to_segmentation(resample(scores))
    regions = list(range(1, 14))
    for chunk in (1, 3, 4, 13):
        assert torch.equal(streamed_segmentation(scores, resample, chunk=chunk), everything)
        assert torch.equal(streamed_segmentation(scores, resample, regions, chunk=chunk),
                           scores_to_segmentation(resample(scores), regions))


def test_probabilities_filled_a_few_classes_at_a_time_equal_all_at_once() -> None:
    torch.manual_seed(0)
    probs = torch.randn(6, 8, 12, 10).softmax(0)
    properties = {"shape_before_cropping": [12, 20, 15], "bbox_used_for_cropping": [[2, 10], [3, 15], [1, 11]],
                  "shape_after_cropping_and_before_resampling": [8, 12, 10], "target_spacing": [1.0, 1.0, 1.0],
                  "spacing": [1.0, 1.0, 1.0]}
    expected = np.zeros((6, 12, 20, 15), np.float16)
    expected[0] = 1
    expected[:, 2:10, 3:15, 1:11] = probs.numpy().astype(np.float16)
    for chunk in (1, 4, 6):
        got = probabilities_in_original_space(probs, properties, [2, 0, 1], region_based=False, chunk=chunk)
        assert np.array_equal(got, expected.transpose(0, 3, 1, 2))


def test_probabilities_written_chunk_by_chunk_read_back_as_one_array(tmp_path: Path) -> None:
    """The ``.npz`` streamed a few classes at a time holds what the whole array gives, and reads with ``np.load``;
    its classes are made only as the file is written."""
    from nnlight.inference.export import ClassChunks, probability_chunks, read_probabilities, write_probabilities


    torch.manual_seed(0)
    probs = torch.randn(7, 6, 10, 12).softmax(0)  # at the plan's spacing, resampled to the crop's 8 x 12 x 10
    properties = {"shape_before_cropping": [12, 20, 15], "bbox_used_for_cropping": [[2, 10], [3, 15], [1, 11]],
                  "shape_after_cropping_and_before_resampling": [8, 12, 10], "target_spacing": [1.2, 1.1, 0.9],
                  "spacing": [0.9, 0.92, 1.08]}
    whole = probabilities_in_original_space(probs, properties, [2, 0, 1], region_based=False, chunk=7)
    made: list[int] = []
    streamed = probability_chunks(probs, properties, [2, 0, 1], region_based=False, chunk=3)

    def counted(chunks):
        for part in chunks:
            made.append(len(part))
            yield part

    write_probabilities(tmp_path / "streamed.npz", ClassChunks(streamed.shape, counted(streamed.chunks)))
    write_probabilities(tmp_path / "whole.npz", whole)
    assert made == [3, 3, 1] and streamed.shape == whole.shape
    for name in ("streamed", "whole"):
        assert written_completely(tmp_path / f"{name}.npz")
        back = read_probabilities(tmp_path / f"{name}.npz")
        assert back.dtype == np.float16 and np.array_equal(back, whole)
