"""Preprocessing wall time and peak memory per configuration for a raw dataset.

    python benchmarks/preprocess_speed.py ../shared/datasets/Dataset101_BraTS2015Mini [--workers 2]
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import tempfile
import time
from pathlib import Path

from nnlight import __version__
from nnlight.fingerprint import compute_fingerprint
from nnlight.planning import PlannerSettings, plan_experiment
from nnlight.preprocessing.preprocess import preprocess_dataset
from nnlight.raw.dataset import require_raw_dataset


def _disk_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    dataset = require_raw_dataset(args.dataset)
    print(f"nnlight {__version__} | {os.cpu_count()} CPUs | {datetime.date.today()} | {dataset.name}: "
          f"{len(dataset.cases)} cases, {args.workers} workers")
    # A small intensity sample keeps the fingerprint workers' memory out of the peak RSS measured below;
    # it changes the CT clipping values only, not the work preprocessing does.
    fingerprint = compute_fingerprint(dataset, args.workers, sample_budget=1e5)
    plans = plan_experiment(fingerprint, dataset.dataset_json, PlannerSettings(), dataset.name)
    with tempfile.TemporaryDirectory() as out:
        for name in plans.configurations:
            if plans.configurations[name].inherits_from:
                continue
            start = time.perf_counter()
            report = preprocess_dataset(dataset, plans, Path(out), args.workers, configurations=[name])[0]
            seconds = time.perf_counter() - start
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # largest worker so far
            print(f"{name}: {seconds:.1f} s = {len(dataset.cases) / seconds:.2f} cases/s, "
                  f"store {_disk_mib(report.folder):.0f} MiB, peak worker RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
