"""Time the border-core conversion and its reverse on a large anisotropic volume of ~1,000 cells; prints seconds.

    python -m benchmarks.instance_conversion [--shape 64 512 512] [--spacing 2.0 0.5 0.5] [--cells 1000]

The volume is synthetic (touching and overlapping cells, nnlight.raw.synthetic); the reverse runs on the perfect
border-core labels, so it also reports how many objects come back and their SEG against the original map.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import resource
import time

import numpy as np
import torch

from nnlight import __version__
from nnlight.evaluation.object_metrics import instance_metrics
from nnlight.raw.instances import InstancePlan, border_core, instances_from_border_core
from nnlight.raw.synthetic import synthetic_cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[64, 512, 512])
    parser.add_argument("--spacing", type=float, nargs=3, default=[2.0, 0.5, 0.5])
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--radius-mm", type=float, default=7.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    shape, spacing = tuple(args.shape), tuple(args.spacing)
    _, ids = synthetic_cells(shape, spacing, args.cells, args.radius_mm, np.random.default_rng(0))
    count = len(np.unique(ids)) - 1
    plan = InstancePlan("cell", 3, 1.0, 2.0, 5.0)
    to_border_core, to_instances = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        labels = border_core(ids, spacing, plan.border_thickness_mm)
        to_border_core.append(time.perf_counter() - start)
        start = time.perf_counter()
        back = instances_from_border_core(labels, spacing, plan)
        to_instances.append(time.perf_counter() - start)
    start = time.perf_counter()
    scores = instance_metrics(ids, back)
    scoring = time.perf_counter() - start
    print(f"nnlight {__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"{datetime.date.today()}")
    print(f"volume {'x'.join(map(str, shape))} at {spacing} mm, {count} cells ({ids.size / 1e6:.1f} M voxels)")
    print(f"instance map -> border-core:  {min(to_border_core):.2f} s (best of {args.repeats})")
    print(f"border-core -> instance map:  {min(to_instances):.2f} s (best of {args.repeats}); "
          f"{scores['n_pred_objects']} objects back, F1 {scores['F1']:.4f}, SEG {scores['SEG']:.4f}")
    print(f"object scores (F1/AP/PQ/SEG/ARE/VI): {scoring:.2f} s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
