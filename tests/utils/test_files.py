"""Atomic writes: a reader sees the old file or the new one, never a mix, also with concurrent writers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnlight.inference.export import write_segmentation
from nnlight.raw.io import Geometry


def test_concurrent_writers_of_one_segmentation_never_corrupt_it(tmp_path: Path) -> None:
    """Each writer uses its own temporary name (process id + random), so the last rename wins whole."""
    geometry = Geometry((1.0, 1.0, 1.0), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), False)
    target = tmp_path / "case.nii.gz"
    segmentations = [np.full((8, 16, 16), value, np.uint8) for value in range(1, 9)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda s: write_segmentation(s, target, geometry), segmentations * 4))
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(target)))
    assert written.shape == (8, 16, 16) and len(np.unique(written)) == 1 and 1 <= written.flat[0] <= 8
    assert [p.name for p in tmp_path.iterdir()] == ["case.nii.gz"]  # no temporary file left behind
