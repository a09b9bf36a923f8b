"""Data pipeline throughput against what one training step consumes, for a planned + preprocessed dataset.

    python benchmarks/data_pipeline.py data/preprocessed/Dataset101_BraTS2015Mini --configuration 3d_fullres

Prints: (1) patches/s that the DataLoader workers read and crop at the initial (pre-augmentation) patch size,
(2) seconds per batch of augmentation on this device, (3) seconds of one training step (forward, backward and
SGD step of the plan's network at the plan's batch and patch size, fp32) and the ratio of pipeline
samples/s to training samples/s.
"""

from __future__ import annotations

import argparse
import datetime
import os
import time
from pathlib import Path

import torch

from nnlight.data.augmentation import augment
from nnlight.data.datamodule import plan_datamodule
from nnlight.nets import build_network
from nnlight.planning import plans_from_nnunet
from nnlight.utils.files import load_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset_folder", help="<preprocessed>/<Dataset>")
    parser.add_argument("--configuration", default="3d_fullres")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    folder = Path(args.dataset_folder)
    plans = plans_from_nnunet(load_json(folder / "nnUNetPlans.json"))
    plan = plans.configurations[args.configuration]
    module = plan_datamodule(folder, plan, iterations_per_epoch=args.batches, num_workers=args.workers)
    module.setup("fit")
    print(f"{datetime.date.today()} | {os.cpu_count()} CPUs | torch {torch.__version__} threads "
          f"{torch.get_num_threads()} | {folder.name} {args.configuration}: batch {plan.batch_size}, patch "
          f"{plan.patch_size}, initial patch {module.initial_patch_size}, {args.workers} workers")

    loader = iter(module.train_dataloader())
    first = next(loader)  # worker start-up is not throughput
    start = time.perf_counter()
    batches = [first, *[next(loader) for _ in range(args.batches - 2)]]
    read_seconds = time.perf_counter() - start
    read_rate = (args.batches - 2) * plan.batch_size / read_seconds
    print(f"read + crop in workers: {read_rate:.2f} samples/s")

    generator = torch.Generator().manual_seed(0)
    times = []
    for images, labels in batches[: args.steps + 1]:
        start = time.perf_counter()
        augment(images, labels, plan.patch_size, module.augmentation, module.geometry, generator,
                module.mask_channels)
        times.append(time.perf_counter() - start)
    augment_seconds = min(times[1:])
    print(f"augmentation on cpu: {augment_seconds:.3f} s/batch = {plan.batch_size / augment_seconds:.2f} samples/s")

    arch = plan.architecture
    net = build_network(arch.network, input_channels=first[0].shape[1], num_classes=len(
        load_json(folder / "dataset.json")["labels"]), deep_supervision=True, **arch.network_kwargs())
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.99, nesterov=True)
    images, targets = module.on_after_batch_transfer(batches[0], 0)
    step_times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        outputs = net(images)
        loss = sum(torch.nn.functional.cross_entropy(o, t[:, 0].long()) for o, t in zip(outputs, targets,
                                                                                         strict=False))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step_times.append(time.perf_counter() - start)
    step_seconds = min(step_times)
    train_rate = plan.batch_size / step_seconds
    pipeline_rate = min(read_rate, plan.batch_size / augment_seconds)
    print(f"training step (fp32): {step_seconds:.2f} s = {train_rate:.2f} samples/s")
    print(f"pipeline / training = {pipeline_rate:.2f} / {train_rate:.2f} = {pipeline_rate / train_rate:.1f}x")


if __name__ == "__main__":
    main()
