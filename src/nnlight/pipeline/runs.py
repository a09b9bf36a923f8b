"""``nnlight-runs``: what has been trained for a dataset, and what differs between two runs.

  nnlight-runs dataset=Dataset900_Demo            every run: configuration, model, fold, status, validation Dice
  nnlight-runs diff a=<run folder> b=<run folder>  method, plan, data and software that differ (a reviewer's diff)
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from nnlight.utils.command_line import key_value_arguments
from nnlight.utils.errors import UserError, exit_on_user_error
from nnlight.utils.files import load_json
from nnlight.utils.folders import DatasetResults, RunFolder

# what a run's files say, by what a reader asks: how it was trained, on what plan and data, with what software
ASPECTS = ("method", "plan", "data", "software")
_DATA_KEYS = ("data.fold", "data.batch_size", "data.patch_size", "data.oversample_foreground", "data.oversampling",
              "data.iterations_per_epoch", "data.val_iterations_per_epoch", "seed")
_LOCATIONS = ("paths.", "plan.")  # where files live, and the plan (compared from plan.json itself)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnlight-runs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     usage="nnlight-runs dataset=<Dataset> [results=<folder>]\n"
                                           "       nnlight-runs diff a=<run folder> b=<run folder>")
    parser.add_argument("command", nargs="?", choices=("list", "diff"), default="list")
    parser.add_argument("--dataset", help="DatasetXXX_Name (list)")
    parser.add_argument("--results", default=os.environ.get("NNLIGHT_RESULTS", "data/results"), type=Path,
                        help="results root (default: $NNLIGHT_RESULTS or data/results)")
    parser.add_argument("--a", type=Path, help="a run folder (.../fold_<k>) (diff)")
    parser.add_argument("--b", type=Path, help="another run folder (diff)")
    return parser


def run_status(run: RunFolder) -> str:
    if run.stats.is_file():
        return "finished"
    return "failed" if run.failure.is_file() else "not finished"


def list_runs(results: Path) -> list[dict[str, Any]]:
    """One row per trained (or started) fold of every model of the dataset."""
    if not results.is_dir():
        raise UserError(f"{results}: no such results folder; train first (nnlight-train plan=<Dataset>/<config>)")
    rows = []
    for model in DatasetResults(results).model_folders():
        for run in model.runs():
            stats = load_json(run.stats) if run.stats.is_file() else {}
            record = load_json(run.run_config) if run.run_config.is_file() else {}
            rows.append({"configuration": model.path.parent.name, "model": model.path.name, "fold": run.fold,
                         "status": run_status(run), "dice": stats.get("summary", {}).get("validation_dice"),
                         "epochs": stats.get("summary", {}).get("epochs"), "kind": "debug run" if record.get("debug")
                         else "search trial" if record.get("search") else "", "path": run.path})
    return rows


def _flat(values: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(values, Mapping):
        for key, value in values.items():
            yield from _flat(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), values


def run_facts(run: RunFolder) -> dict[str, dict[str, Any]]:
    """A run's recorded facts by aspect, each a flat ``key -> value`` mapping."""
    for path in (run.run_config, run.plan, run.provenance):
        if not path.is_file():
            raise UserError(f"{path}: not found; {run.path} is not a run folder nnlight-train wrote (give a "
                            ".../fold_<k> folder)")
    config = dict(_flat(load_json(run.run_config)["config"]))
    provenance = load_json(run.provenance)
    return {
        "method": {k: v for k, v in config.items() if k not in _DATA_KEYS and not k.startswith(_LOCATIONS)},
        "plan": dict(_flat(load_json(run.plan))),
        "data": {**{k: config[k] for k in _DATA_KEYS if k in config},
                 "fingerprint_sha256": provenance.get("fingerprint_sha256")},
        "software": {k: v for k, v in provenance.items() if k not in ("seed", "fingerprint_sha256")},
    }


def run_differences(a: RunFolder, b: RunFolder) -> dict[str, list[tuple[str, Any, Any]]]:
    """Per aspect, every key whose value differs: ``(key, value in a, value in b)``; a missing key is None."""
    facts_a, facts_b = run_facts(a), run_facts(b)
    return {aspect: [(key, facts_a[aspect].get(key), facts_b[aspect].get(key))
                     for key in sorted(set(facts_a[aspect]) | set(facts_b[aspect]))
                     if facts_a[aspect].get(key) != facts_b[aspect].get(key)] for aspect in ASPECTS}


def _show(value: Any) -> str:
    return "(not set)" if value is None else str(value)


def print_differences(a: Path, b: Path) -> None:
    differences = run_differences(RunFolder(a), RunFolder(b))
    print(f"a: {a}\nb: {b}")
    for aspect in ASPECTS:
        rows = differences[aspect]
        print(f"\n{aspect}: " + ("the same" if not rows else f"{len(rows)} difference(s)"))
        for key, value_a, value_b in rows:
            print(f"  {key}: {_show(value_a)} -> {_show(value_b)}")


def print_runs(results: Path) -> None:
    runs = list_runs(results)
    for run in runs:
        dice = "" if run["dice"] is None else f"Dice {run['dice']:.4f}"
        kind = f" ({run['kind']})" if run["kind"] else ""
        print(f"{run['configuration']}/{run['model']} fold {run['fold']}: {run['status']}{kind} {dice}".rstrip())
    print(f"\n{len(runs)} run(s) in {results}" + ("; compare two: nnlight-runs diff a=<run folder> b=<run folder>"
                                                 if len(runs) > 1 else ""))


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(key_value_arguments(parser, argv))
    with exit_on_user_error():
        if args.command == "diff":
            if args.a is None or args.b is None:
                raise UserError("diff needs a=<run folder> b=<run folder> (each .../fold_<k>)")
            print_differences(args.a, args.b)
        elif not args.dataset:
            raise UserError("nnlight-runs dataset=<DatasetXXX_Name> lists its runs (or: nnlight-runs diff a=... b=...)")
        else:
            print_runs(args.results / args.dataset)


if __name__ == "__main__":
    main()
