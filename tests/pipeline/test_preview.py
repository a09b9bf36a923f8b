"""nnlight-preview-augmentation shows the augmentation a training would use: a built-in preset or the
researcher's own option with its own transform."""

from __future__ import annotations

from pathlib import Path

import pytest
import SimpleITK as sitk

from nnlight.pipeline.preview import main
from tests.conftest import REPO

pytestmark = pytest.mark.integration


def test_augmentation_preview_png(preprocessed, tmp_path: Path) -> None:
    folder, plans = preprocessed
    out = tmp_path / "preview.png"
    main([folder.name, f"preprocessed={folder.parent}", "samples=3", f"out={out}", "augmentation=da5"])
    image = sitk.ReadImage(str(out))
    patch = plans.configurations["3d_fullres"].patch_size
    assert image.GetNumberOfComponentsPerPixel() == 3
    assert image.GetSize() == (3 * patch[2], 3 * patch[1])  # 3 columns wide, 3 rows of middle slices


def test_the_preview_sees_an_augmentation_of_ones_own_folder(preprocessed, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    folder, _ = preprocessed
    monkeypatch.syspath_prepend(str(REPO / "tests" / "byo_method"))  # the lab's transform class
    monkeypatch.setenv("NNLIGHT_CONFIG_DIR", "")  # none (restored after the test: main sets it)
    own = REPO / "tests" / "byo_method" / "configs"
    main([folder.name, f"preprocessed={folder.parent}", "samples=2", f"out={tmp_path / 'own.png'}",
          "augmentation=cutout", f"config_dir={own}"])
    assert (tmp_path / "own.png").stat().st_size > 0 and "augmented (cutout)" in capsys.readouterr().out
    monkeypatch.setenv("NNLIGHT_CONFIG_DIR", "")  # none (restored after the test: main sets it)
    with pytest.raises(SystemExit) as ended:  # without the folder the option does not exist, and says so
        main([folder.name, f"preprocessed={folder.parent}", "augmentation=cutout"])
    assert ended.value.code == 2 and "augmentation=cutout: no such option" in capsys.readouterr().err


def test_augmentation_preview_names_a_missing_plan(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["Dataset999_Nope", f"preprocessed={tmp_path}"])
    assert exit_info.value.code == 2
    assert "Dataset999_Nope/nnUNetPlans.json" in capsys.readouterr().err
