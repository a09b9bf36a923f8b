"""nnlight-plot-overlays: a PNG per case that shows the labels over the image, at the right size."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import pytest

from nnlight.raw.overlay import main


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
