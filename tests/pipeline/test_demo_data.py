"""nnlight-demo-data: each kind of demo its own dataset, never written into an existing one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnlight.pipeline.demo_data import main


def _files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_each_kind_of_demo_is_its_own_dataset_and_none_is_written_over(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    raw = tmp_path / "raw"
    main([f"raw={raw}", "cases=2"])
    main([f"raw={raw}", "cases=2", "instances=true", "2d=true"])  # the sequence: its own dataset now
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset900_Demo", "Dataset909_DemoCells2D"]
    assert json.loads((raw / "Dataset900_Demo" / "dataset.json").read_text())["file_ending"] == ".nii.gz"
    before = _files(raw)
    capsys.readouterr()
    main([f"raw={raw}", "cases=2"])  # the same demo again (make demo twice): nothing to do
    assert '"note": "already there"' in capsys.readouterr().out
    for other in (["cases=3"], ["2d=true", "id=900", "name=Demo"]):  # another dataset under an existing name
        with pytest.raises(SystemExit) as ended:
            main([f"raw={raw}", "cases=2", *other])
        assert ended.value.code == 2
        assert "Dataset900_Demo: exists already; nnlight writes a generated dataset only into a new folder" in \
            capsys.readouterr().err
    assert _files(raw) == before and not [p for p in raw.iterdir() if p.name.startswith(".")]
