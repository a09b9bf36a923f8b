"""The suite's results as tidy tables: ``runs.csv`` (one row per run, failed and unfinished ones included)
and ``results.csv`` (one row per run × validation case × label, with the run's columns repeated)."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nnlight.benchmarking.suite import SuiteRun
from nnlight.evaluation.metrics import COUNTS, SEMANTIC_SCORES
from nnlight.utils.files import load_json
from nnlight.utils.folders import RunFolder

KEY_COLUMNS = ["dataset", "configuration", "variant", "fold", "seed"]
RUN_COLUMNS = [*KEY_COLUMNS, "status", "error", "run_folder", "foreground_dice", "epochs", "train_seconds",
               "seconds_per_epoch", "validation_seconds", "peak_host_memory_mb", "peak_child_process_memory_mb",
               "peak_device_memory_mb", "parameters", "device", "nnlight_version", "git_revision",
               "git_uncommitted_changes", "config_hash", "fingerprint_sha256", "deterministic"]
CASE_COLUMNS = [*KEY_COLUMNS, "case", "label", *SEMANTIC_SCORES, *RUN_COLUMNS[len(KEY_COLUMNS) + 2:]]


def case_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """``CASE_COLUMNS`` plus the object scores (instance datasets) and a user's metrics (the metrics group) found in
    the rows, after the built-in scores."""
    own = list(dict.fromkeys(k for row in rows for k in row.get("own_metrics", ())))
    at = CASE_COLUMNS.index(SEMANTIC_SCORES[-1]) + 1
    return [*CASE_COLUMNS[:at], *own, *CASE_COLUMNS[at:]]


def run_row(run: SuiteRun, folder: RunFolder, results_root: Path, log: Path | None) -> dict[str, Any]:
    """What the run folder says: finished (its figures), failed (its error) or not finished."""
    row: dict[str, Any] = dict(zip(KEY_COLUMNS, run.key(), strict=True))
    row["run_folder"] = str(folder.path.relative_to(results_root))
    if folder.stats.is_file():
        stats, provenance, identity = (load_json(p) for p in (folder.stats, folder.provenance, folder.run_config))
        row |= {"status": "finished", "error": "",
                "foreground_dice": stats["summary"].get("validation_dice"), "epochs": stats["summary"]["epochs"],
                **{k: stats.get(k) for k in ("train_seconds", "seconds_per_epoch", "validation_seconds",
                                             "peak_host_memory_mb", "peak_child_process_memory_mb",
                                             "peak_device_memory_mb", "parameters", "device")},
                "nnlight_version": provenance.get("nnlight"), "git_revision": provenance.get("git_revision"),
                "git_uncommitted_changes": provenance.get("git_uncommitted_changes"),
                "config_hash": identity["config_hash"],
                "deterministic": bool(identity["config"]["trainer"].get("deterministic")),
                "fingerprint_sha256": provenance.get("fingerprint_sha256")}
    elif folder.failure.is_file():
        row |= {"status": "failed", "error": load_json(folder.failure)["error"]}
    else:
        row |= {"status": "not finished",
                "error": f"see {log}" if log is not None and log.is_file() else "not run yet"}
    return row


def case_rows(run_row_: Mapping[str, Any], folder: RunFolder) -> list[dict[str, Any]]:
    """The fold's validation scores, one row per case and label (none for a run that did not finish)."""
    if run_row_["status"] != "finished" or not folder.validation_summary.is_file():
        return []
    run_part = {k: run_row_[k] for k in RUN_COLUMNS if k not in ("status", "error")}
    return [{**run_part, "case": entry["case"], "label": label, **{m: metrics.get(m) for m in SEMANTIC_SCORES},
             **{m: metrics[m] for m in own_scores(metrics)}, "own_metrics": own_scores(metrics)}
            for entry in load_json(folder.validation_summary)["metric_per_case"]
            for label, metrics in entry["metrics"].items()]


def own_scores(metrics: Mapping[str, Any]) -> list[str]:
    """The scores beyond Dice/IoU/HD95/NSD among one label's: object scores and a user's metrics."""
    return [m for m in metrics if m not in (*SEMANTIC_SCORES, *COUNTS)]


def to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return buffer.getvalue()
