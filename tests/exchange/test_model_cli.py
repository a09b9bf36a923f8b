"""nnlight-model refuses, with one line and exit 2, to write where it must not: over a dataset, or into a folder
that cannot be written (probed before any work)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnlight.exchange.model_cli import main
from nnlight.raw.synthetic import make_synthetic_dataset


def _refused(capsys: pytest.CaptureFixture, *argv: str) -> str:
    with pytest.raises(SystemExit) as ended:
        main(list(argv))
    assert ended.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("nnlight: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_an_onnx_export_never_writes_over_a_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dataset = make_synthetic_dataset(tmp_path / "raw", 900, "Demo", num_cases=2, shape=(8, 12, 10),
                                     num_test_cases=0)
    before = {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file()}
    err = _refused(capsys, "export", "format=onnx", "dataset=Dataset900_Demo", "model=3d_fullres/baseline",
                   f"output={dataset}", f"results={tmp_path / 'results'}")
    assert "holds imagesTr, imagesTs, labelsTr; an ONNX export writes only into a new or empty folder" in err
    assert {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file()} == before


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc (a folder nothing can write)")
@pytest.mark.parametrize(("argv", "message"), [
    (["install", "file=m.zip", "results=/proc/nnl"], "results=/proc/nnl: /proc cannot be written"),
    (["export", "dataset=Dataset900_Demo", "model=best", "output=/proc/x.zip"], "output=/proc/x.zip: /proc cannot"),
    (["export", "format=onnx", "dataset=Dataset900_Demo", "model=best", "output=/proc/onnx"], "output=/proc/onnx"),
    (["export-nnunet", "dataset=Dataset900_Demo", "model=2d/baseline", "output=/proc/n"], "output=/proc/n"),
])
def test_the_folder_written_is_probed_before_any_work(argv: list[str], message: str,
                                                      capsys: pytest.CaptureFixture) -> None:
    assert message in _refused(capsys, *argv)
