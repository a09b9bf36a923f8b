"""Time the integrity check + fingerprint and the planning of a raw dataset; prints cases/s.

    python benchmarks/plan_speed.py ../shared/datasets/Dataset101_BraTS2015Mini [--workers 2]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import time

import torch

from nnlight import __version__
from nnlight.fingerprint import compute_fingerprint
from nnlight.planning import PlannerSettings, plan_experiment
from nnlight.raw.dataset import require_raw_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="raw dataset folder")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    dataset = require_raw_dataset(args.dataset)
    n = len(dataset.cases)
    print(f"nnlight {__version__} | torch {torch.__version__} | {platform.processor() or platform.machine()} | "
          f"{os.cpu_count()} CPUs | {datetime.date.today()} | {dataset.name}: {n} cases, {args.workers} workers")
    fingerprint_times, planning_times = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        fingerprint = compute_fingerprint(dataset, args.workers)
        fingerprint_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        plans = plan_experiment(fingerprint, dataset.dataset_json, PlannerSettings(), dataset.name)
        planning_times.append(time.perf_counter() - start)
    best_fp, best_plan = min(fingerprint_times), min(planning_times)
    print(f"check + fingerprint: {best_fp:.2f} s (best of {args.repeats}) = {n / best_fp:.2f} cases/s")
    print(f"planning ({', '.join(plans.configurations)}): {best_plan:.3f} s")
    print(f"total: {best_fp + best_plan:.2f} s = {n / (best_fp + best_plan):.2f} cases/s")
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak RSS: main {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB, "
          f"largest worker {children:.0f} MiB")


if __name__ == "__main__":
    main()
