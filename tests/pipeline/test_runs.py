"""nnlight-runs: every run of a dataset with its status and score, and the diff between two runs a reviewer asks
for (method, plan, data, software)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnlight.pipeline.runs import main


def _run(folder: Path, lr: float, fold: int, nnlight: str, finished: bool, spacing: float = 1.0) -> Path:
    run = folder / f"fold_{fold}"
    run.mkdir(parents=True)
    config = {"optimizer": {"lr": lr, "momentum": 0.99}, "data": {"fold": fold, "batch_size": 2}, "seed": 12345,
              "paths": {"results": str(folder)}}
    (run / "run_config.json").write_text(json.dumps({"config_hash": "x", "debug": None, "search": None,
                                                     "config": config}))
    (run / "plan.json").write_text(json.dumps({"spacing": [spacing, 1.0], "patch_size": [32, 32]}))
    (run / "provenance.json").write_text(json.dumps({"nnlight": nnlight, "torch": "2.13.0", "seed": 12345,
                                                     "fingerprint_sha256": "abc"}))
    if finished:
        (run / "run_stats.json").write_text(json.dumps({"summary": {"validation_dice": 0.8123, "epochs": 2}}))
    return run


def test_runs_are_listed_with_status_and_score(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "results"
    _run(results / "Dataset900_Demo" / "2d" / "baseline", 0.01, 0, "0.1.0", True)
    _run(results / "Dataset900_Demo" / "2d" / "baseline", 0.01, 1, "0.1.0", False)
    main(["dataset=Dataset900_Demo", f"results={results}"])
    out = capsys.readouterr().out
    assert "2d/baseline fold 0: finished Dice 0.8123" in out and "2d/baseline fold 1: not finished" in out


def test_the_diff_names_what_differs_by_aspect(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    a = _run(tmp_path / "a", 0.01, 0, "0.1.0", True)
    b = _run(tmp_path / "b", 0.001, 1, "0.2.0", True, spacing=0.5)
    main(["diff", f"a={a}", f"b={b}"])
    out = capsys.readouterr().out
    assert "method: 1 difference(s)\n  optimizer.lr: 0.01 -> 0.001" in out  # paths are no difference
    assert "plan: 1 difference(s)\n  spacing: [1.0, 1.0] -> [0.5, 1.0]" in out
    assert "data: 1 difference(s)\n  data.fold: 0 -> 1" in out and "nnlight: 0.1.0 -> 0.2.0" in out


def test_a_folder_that_is_no_run_is_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["diff", f"a={tmp_path}", f"b={tmp_path}"])
    assert ended.value.code == 2 and f"{tmp_path / 'run_config.json'}: not found" in capsys.readouterr().err

