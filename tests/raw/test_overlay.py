"""nnlight-plot-overlays: a PNG per case with every channel and the labels over the image, a legend above."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import pytest

from nnlight.raw.overlay import main
from nnlight.utils.overlays import GAP, LEGEND_BAND, TITLE_BAND, panel_scale

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("fixture", ["demo_3d", "demo_2d"])
def test_one_png_per_case_of_the_image_size(fixture: str, request: pytest.FixtureRequest, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    dataset: Path = request.getfixturevalue(fixture)
    main([f"dataset={dataset}", f"output={tmp_path / 'overlays'}"])
    pngs = sorted((tmp_path / "overlays").glob("*.png"))
    assert len(pngs) == len(list((dataset / "labelsTr").iterdir()))
    # a (y, x) slice of the 3D demo (2 channels), the 2D image (1 channel); panels enlarged to ~256 pixels
    (height, width), channels = ((32, 28), 2) if fixture == "demo_3d" else ((40, 48), 1)
    side = panel_scale((height, width))
    columns = channels + 1  # every channel, then the labels over the first
    size = (height * side + TITLE_BAND + LEGEND_BAND, columns * width * side + (columns - 1) * GAP)
    assert all(matplotlib.image.imread(p).shape[:2] == size for p in pngs)
    assert "Wrote" in capsys.readouterr().out


def test_the_old_flags_still_work_with_a_note(demo_2d: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    main([str(demo_2d), "--output", str(tmp_path / "overlays"), "--channel", "0"])
    assert len(list((tmp_path / "overlays").glob("*.png"))) == len(list((demo_2d / "labelsTr").iterdir()))
    assert "note: --output is the old style" in capsys.readouterr().err


def test_an_unknown_key_is_refused_naming_the_valid_ones(demo_2d: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([f"dataset={demo_2d}", "out=x"])
    assert exit_info.value.code == 2
    assert "out=x: no such setting; did you mean output?; choose one of channel, dataset, output" in \
        capsys.readouterr().err


def test_a_broken_dataset_is_refused_with_exit_code_2(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([f"dataset={tmp_path}", f"output={tmp_path / 'out'}"])
    assert exit_info.value.code == 2 and not (tmp_path / "out").exists()
