"""``sweep_results.md`` / ``.csv`` in a ``-m`` sweep's own folder: one row per job with its overrides and results,
so a sweep is read in one table instead of one ``run_stats.json`` per run folder.

A Hydra callback (configs/hydra/train.yaml): each job, when it ends, records itself in ``<sweep>/jobs/<n>.json``
(written by the job's own process, so it works with any launcher, and atomically); when the sweep ends the
records become the table. A rerun of the same sweep into another folder tables that sweep's jobs.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from nnlight.utils.files import atomic_write_json, atomic_write_text, load_json
from nnlight.utils.folders import RunFolder

RESULT_KEYS = ("validation_dice", "pseudo_dice_ema", "epochs", "pruned_at_epoch")


def job_record(run_folder: Path, overrides: list[str], status: JobStatus, error: BaseException | None
               ) -> dict[str, Any]:
    """A finished job's overrides, state, folder and results (from its ``run_stats.json``)."""
    stats = RunFolder(run_folder).stats
    summary = load_json(stats)["summary"] if stats.is_file() else {}
    results = {k: summary[k] for k in RESULT_KEYS if summary.get(k) is not None}
    results |= {k: v for k, v in summary.get("validation_metrics", {}).items() if k != "Dice"}
    state = "finished" if status == JobStatus.COMPLETED else "failed"
    return {"overrides": overrides, "state": state, "run_folder": str(run_folder), "results": results,
            "error": None if error is None else str(error).splitlines()[0][:300]}


def sweep_tables(records: list[dict[str, Any]]) -> tuple[str, str]:
    """(markdown, csv): one row per job in job order; the overrides that differ between jobs as columns."""
    keys = list(dict.fromkeys(o.split("=", 1)[0] for r in records for o in r["overrides"]))
    values = [{o.split("=", 1)[0]: o.split("=", 1)[1] for o in r["overrides"] if "=" in o} for r in records]
    varying = [k for k in keys if len({v.get(k) for v in values}) > 1]
    metrics = list(dict.fromkeys(m for r in records for m in r["results"]))
    header = ["job", *varying, "state", *metrics, "run_folder"]
    rows = [[str(i), *(v.get(k, "") for k in varying), r["state"] + (f": {r['error']}" if r["error"] else ""),
             *(_number(r["results"].get(m)) for m in metrics), r["run_folder"]]
            for i, (r, v) in enumerate(zip(records, values, strict=True))]
    common = [o for o in records[0]["overrides"] if o.split("=", 1)[0] not in varying] if records else []
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows([header, *rows])
    markdown = [f"# Sweep: {len(records)} job(s), {sum(r['state'] == 'finished' for r in records)} finished", "",
                f"Every job: {' '.join(common) or '(no common override)'}", "",
                "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                *("| " + " | ".join(row) + " |" for row in rows)]
    return "\n".join(markdown) + "\n", buffer.getvalue()


def _number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


class SweepResults(Callback):
    """``hydra.callbacks.sweep_results`` of train's Hydra config."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        hydra = config.hydra
        if hydra.mode != RunMode.MULTIRUN:
            return
        error = None
        if job_return.status != JobStatus.COMPLETED:
            try:
                job_return.return_value  # noqa: B018 - a failed job's property raises its exception
            except Exception as e:
                error = e
        record = job_record(Path(str(hydra.runtime.output_dir)), list(job_return.overrides or []),
                            job_return.status, error)
        atomic_write_json(Path(str(hydra.sweep.dir)) / "jobs" / f"{int(hydra.job.num):05d}.json", record)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        folder = Path(str(config.hydra.sweep.dir))
        records = [load_json(p) for p in sorted((folder / "jobs").glob("*.json"))]
        if not records:
            return
        markdown, table = sweep_tables(records)
        atomic_write_text(folder / "sweep_results.md", markdown)
        atomic_write_text(folder / "sweep_results.csv", table)
        print(f"Sweep results: {folder / 'sweep_results.md'} (table: sweep_results.csv)")
