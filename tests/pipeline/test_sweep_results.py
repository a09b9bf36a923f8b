"""sweep_results.md/.csv: a row per job, the overrides that vary as columns, a failed job with its error."""

from __future__ import annotations

from pathlib import Path

from hydra.core.utils import JobStatus

from nnlight.pipeline.sweep_results import job_record, sweep_tables
from nnlight.utils.files import atomic_write_json


def test_a_row_per_job_with_the_varying_overrides_and_a_failed_job_named(tmp_path: Path) -> None:
    finished = tmp_path / "fold_0"
    atomic_write_json(finished / "run_stats.json", {"summary": {
        "validation_dice": 0.8123, "pseudo_dice_ema": 0.7, "epochs": 2,
        "validation_metrics": {"Dice": 0.8123, "HD95": 3.5}}})
    records = [job_record(finished, ["plan=D/2d", "data.fold=0", "loss=dice"], JobStatus.COMPLETED, None),
               job_record(tmp_path / "fold_1", ["plan=D/2d", "data.fold=1", "loss=dice"], JobStatus.FAILED,
                          RuntimeError("out of memory\nmore"))]
    markdown, table = sweep_tables(records)
    header, first, second = table.splitlines()
    assert header == "job,data.fold,state,validation_dice,pseudo_dice_ema,epochs,HD95,run_folder"
    assert first.startswith("0,0,finished,0.8123,0.7000,2,3.5000,")
    assert second.startswith("1,1,failed: out of memory,,,,,")
    assert "# Sweep: 2 job(s), 1 finished" in markdown and "Every job: plan=D/2d loss=dice" in markdown
