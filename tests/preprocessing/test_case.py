from __future__ import annotations

import numpy as np

from nnlight.preprocessing.case import PreprocessingSettings, preprocess_case, sample_class_locations


def test_class_locations_are_seeded_and_cover_one_percent() -> None:
    seg = np.zeros((1, 30, 40, 50), np.int8)
    seg[0, :, :, :25] = 1  # 30000 voxels -> 10000 samples
    seg[0, 0, 0, 40] = 2
    first, second = sample_class_locations(seg, [1, 2, 3]), sample_class_locations(seg, [1, 2, 3])
    assert first["1"].shape == (10000, 4) and np.all(seg[tuple(first["1"].T)] == 1)
    assert first["2"].tolist() == [[0, 0, 0, 40]] and first["3"].shape == (0, 4)
    np.testing.assert_array_equal(first["1"], second["1"])
    big = np.ones((1, 100, 100, 200), np.int8)  # 2M voxels: 1 % = 20000 > 10000
    assert sample_class_locations(big, [1])["1"].shape[0] == 20000


def test_preprocess_case_transposes_crops_and_resamples() -> None:
    rng = np.random.default_rng(0)
    data = np.zeros((1, 20, 24, 6), np.float32)
    data[0, 2:18, 3:21, 1:5] = rng.normal(5, 1, (16, 18, 4))
    seg = np.zeros((1, 20, 24, 6), np.uint8)
    seg[0, 6:12, 8:14, 2:4] = 1
    settings = PreprocessingSettings(transpose_forward=[2, 0, 1], target_spacing=[2.5, 0.5, 0.5],
                                     normalization_schemes=["ZScoreNormalization"], use_mask_for_norm=[False],
                                     intensity_properties={}, foreground_classes=[1])
    result = preprocess_case(data, seg, [1.0, 1.0, 5.0], settings)
    props = result.properties
    assert props["spacing"] == [5.0, 1.0, 1.0]
    assert props["shape_before_cropping"] == [6, 20, 24]
    assert props["bbox_used_for_cropping"] == [[1, 5], [2, 18], [3, 21]]
    assert props["shape_after_cropping_and_before_resampling"] == [4, 16, 18]
    assert result.data.shape == (1, 8, 32, 36) and result.seg.shape == (1, 8, 32, 36)
    assert result.seg.dtype == np.int8 and set(np.unique(result.seg)) == {0, 1}
    assert abs(float(result.data.mean())) < 0.2
    assert result.class_locations["1"].shape[1] == 4


def test_round_trip_restores_the_original_grid() -> None:
    """transpose → crop → resample, then the inverse from the stored properties gives back the input grid."""
    from nnlight.preprocessing.resampling import resample_segmentation

    seg = np.zeros((1, 30, 36, 9), np.uint8)
    seg[0, 8:22, 10:26, 3:7] = 1
    seg[0, 12:16, 14:20, 4:6] = 2
    data = np.where(seg > 0, 50.0, 0.0).astype(np.float32)
    data[0, 4:26, 5:31, 1:8] += 10.0  # the body: non-zero region, smaller than the image
    settings = PreprocessingSettings(transpose_forward=[2, 0, 1], target_spacing=[2.0, 0.7, 0.7],
                                     normalization_schemes=["NoNormalization"], use_mask_for_norm=[False],
                                     intensity_properties={}, foreground_classes=[1, 2])
    result = preprocess_case(data, seg, [1.0, 1.0, 3.0], settings)
    props = result.properties

    back = resample_segmentation(result.seg, props["shape_after_cropping_and_before_resampling"],
                                 props["target_spacing"], props["spacing"])
    full = np.zeros((1, *props["shape_before_cropping"]), np.int16)
    full[(slice(None), *[slice(a, b) for a, b in props["bbox_used_for_cropping"]])] = back
    restored = full.transpose(0, *[1 + a for a in np.argsort(settings.transpose_forward)])
    assert restored.shape == seg.shape
    for label in (1, 2):
        a, b = seg == label, restored == label
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.9
