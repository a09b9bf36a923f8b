"""nnlight-plot-overlays: a PNG per case that shows the labels over the image, at the right size."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from nnlight.raw.overlay import main, overlay


def test_labels_are_coloured_over_a_grayscale_image() -> None:
    image = np.linspace(0, 1, 20 * 30).reshape(20, 30)
    labels = np.zeros((20, 30), np.int8)
    labels[5:10, 5:10], labels[12:15, 20:25] = 1, 2
    rgb = overlay(image, labels)
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    background = rgb[labels == 0]
    assert (background[:, 0] == background[:, 1]).all() and (background[:, 1] == background[:, 2]).all()  # gray
    one, two = rgb[7, 7].astype(int), rgb[13, 22].astype(int)
    assert np.ptp(one) > 20 and np.ptp(two) > 20 and not np.array_equal(one, two)  # coloured, one colour per label


@pytest.mark.parametrize("fixture", ["demo_3d", "demo_2d"])
def test_one_png_per_case_of_the_image_size(fixture: str, request: pytest.FixtureRequest, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    dataset: Path = request.getfixturevalue(fixture)
    main([str(dataset), "--output", str(tmp_path / "overlays")])
    pngs = sorted((tmp_path / "overlays").glob("*.png"))
    assert len(pngs) == len(list((dataset / "labelsTr").iterdir()))
    size = (32, 28) if fixture == "demo_3d" else (40, 48)  # a (y, x) slice of the 3D demo, the 2D image
    assert all(matplotlib.image.imread(p).shape[:2] == size for p in pngs)
    assert "Wrote" in capsys.readouterr().out


def test_a_broken_dataset_is_refused_with_exit_code_2(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and not (tmp_path / "out").exists()
