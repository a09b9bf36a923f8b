"""Where a training iteration's and an epoch's time goes, for the real train.py components, on CPU or GPU.

    python -m benchmarks.training_breakdown --shape 128 160 160 --channels 2 --epochs 3 --iterations 250
    python -m benchmarks.training_breakdown --dataset ../shared/datasets/Dataset104_DRIVE --configuration 2d \\
        --iterations 5 --val-iterations 2

A synthetic dataset (or the given raw dataset) is planned and preprocessed in a work folder, then trained with
the data module, task and Trainer that train.py builds (its checkpoints and CSV logger included), with timing
hooks: per training iteration, the time the main process waits for the next batch, the host-to-device copy,
the augmentation on the device, and the Lightning training step (forward, backward, optimizer step, gradient
clipping, logging); per epoch, the first batch (worker start-up), validation and checkpoint saving. A bare
PyTorch step on the same network, loss, optimizer, batch and precision (no Lightning, no data pipeline) is the
reference. On a GPU every mark waits for the device first (``torch.cuda.synchronize``), so time is charged to
the part that spends it. Finally one process reads and crops batches alone: the data workers' cost per core,
and how many cores keep up with the bare step.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch

from benchmarks._common import CONFIGS, planned_dataset, provenance
from nnlight.data.datamodule import SegmentationDataModule
from nnlight.inference.predictor import AUTOCAST_DTYPES, canonical_precision
from nnlight.pipeline.cli import compose_config
from nnlight.pipeline.train import build_data, build_task, build_trainer
from nnlight.pipeline.train_config import parse
from nnlight.pipeline.train_setup import TrainSetup, prepare
from nnlight.utils.folders import RunFolder


class BreakdownTimer(L.Callback):
    """Marks the phases of every training iteration and epoch (the data module's hooks report to it)."""

    def __init__(self) -> None:
        self.device = torch.device("cpu")  # the trainer's, once it is built
        self.phases: dict[str, list[float]] = {k: [] for k in ("wait", "copy", "augment", "step", "iteration")}
        self.first_in_epoch: list[int] = []  # index of each epoch's first iteration
        self.epoch_starts: list[float] = []
        self.validation: list[float] = []
        self.validation_batches = 0
        self.checkpoint: list[float] = []
        self.end = 0.0
        self.batch: Any = None  # one augmented batch, for the bare step
        self._last = self._mark = 0.0

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def phase(self, name: str) -> None:
        """Charge the time since the previous mark to ``name``."""
        t = self.now()
        self.phases[name].append(t - (self._last if name == "wait" else self._mark))
        self._mark = t

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = self.now()
        self.epoch_starts.append(self._last)
        self.first_in_epoch.append(len(self.phases["iteration"]))

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.batch is None:
            self.batch = batch
        self._mark = self.now()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.phase("step")
        self.phases["iteration"].append(self._mark - self._last)
        self._last = self._mark

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._validation_start = self.now()

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        self.validation_batches += 1

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.validation.append(self.now() - self._validation_start)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.end = self.now()


def instrument(data: SegmentationDataModule, timer: BreakdownTimer, trainer: L.Trainer) -> None:
    """Time the data module's three batch hooks (training batches only) and every checkpoint save."""
    def timed(hook: Callable[..., Any], phase: str | None, after: str) -> Callable[..., Any]:
        def wrapper(*args: Any) -> Any:
            if trainer.training and phase:
                timer.phase(phase)
            result = hook(*args)
            if trainer.training:
                timer.phase(after)
            return result
        return wrapper

    data.on_before_batch_transfer = timed(lambda batch, idx: batch, None, "wait")  # type: ignore[method-assign]
    data.transfer_batch_to_device = timed(data.transfer_batch_to_device, None, "copy")  # type: ignore[method-assign]
    data.on_after_batch_transfer = timed(data.on_after_batch_transfer, None, "augment")  # type: ignore[method-assign]
    save = trainer.save_checkpoint

    def timed_save(*args: Any, **kwargs: Any) -> None:
        start = timer.now()
        save(*args, **kwargs)
        timer.checkpoint.append(timer.now() - start)

    trainer.save_checkpoint = timed_save  # type: ignore[method-assign]


def bare_step_seconds(setup: TrainSetup, network: torch.nn.Module, loss: torch.nn.Module, batch: Any,
                      device: torch.device, steps: int) -> float:
    """One training step of the same network, loss, optimizer, clipping and precision with nothing around it."""
    network = network.to(device).train()
    images, targets = batch[0].to(device), [t.to(device) for t in batch[1]]
    optimizer = setup.config.optimizer.create(network.parameters())
    clip = float(setup.config.trainer.get("gradient_clip_val") or 0)
    dtype = AUTOCAST_DTYPES[canonical_precision(setup.config.trainer["precision"])]
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            outputs = network(images)
            value = loss(outputs if isinstance(outputs, list) else [outputs], targets)
        optimizer.zero_grad(set_to_none=True)
        (scaler.scale(value) if scaler else value).backward()
        if scaler:
            scaler.unscale_(optimizer)
        if clip:
            torch.nn.utils.clip_grad_norm_(network.parameters(), clip)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()

    for _ in range(2):  # warm-up (cuDNN autotuning, allocator)
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / steps


def worker_samples_per_second(setup: TrainSetup, batches: int) -> float:
    """Samples one process reads and crops per second at the initial patch size: the data workers' rate per core
    (augmentation is not their job; it runs on the training device)."""
    data = build_data(dataclasses.replace(setup, data=dataclasses.replace(
        setup.data, num_workers=0, iterations_per_epoch=batches + 1)))
    data.setup("fit")
    loader = iter(data.train_dataloader())
    next(loader)  # opening the memory maps is start-up, not throughput
    start = time.perf_counter()
    count = sum(len(next(loader)[0]) for _ in range(batches))
    return count / (time.perf_counter() - start)


@dataclasses.dataclass
class Breakdown:
    """The measured figures: ``iteration`` and ``epoch`` rows as (what, seconds), and the summary figures."""

    title: str
    batch_size: int
    iteration: list[tuple[str, float]]
    epoch: list[tuple[str, float]]
    bare_step: float
    workers: int
    worker_rate_per_core: float

    def table(self) -> str:
        total = dict(self.iteration)["iteration (steady state)"]
        lines = [self.title, "", "| per training iteration | ms | share of the iteration |", "|---|---|---|"]
        lines += [f"| {name} | {1000 * s:.1f} | {100 * s / total:.0f} % |" for name, s in self.iteration]
        epoch = dict(self.epoch)["epoch (wall)"]
        lines += ["", "| per epoch | s | share of the epoch |", "|---|---|---|"]
        lines += [f"| {name} | {s:.2f} | {100 * s / epoch:.0f} % |" for name, s in self.epoch]
        bare_rate = self.batch_size / self.bare_step
        lines += ["", f"iteration / bare step: {total / self.bare_step:.2f}x; bare step {bare_rate:.2f} samples/s, "
                  f"training {self.batch_size / total:.2f} samples/s",
                  f"data workers: {self.worker_rate_per_core:.2f} samples/s per core (read + crop) -> "
                  f"{bare_rate / self.worker_rate_per_core:.3f} cores keep up with the bare step "
                  f"({self.workers} worker(s) in this run)"]
        return "\n".join(lines)


def _steady(values: list[float], first_in_epoch: list[int]) -> float:
    """Median over the iterations after the first epoch (if there are several), each epoch's first one left out."""
    skip = set(first_in_epoch)
    start = first_in_epoch[1] if len(first_in_epoch) > 1 else 0
    kept = [v for i, v in enumerate(values) if i >= start and i not in skip] or values
    return statistics.median(kept)


def measure(overrides: list[str], run_folder: Path, bare_steps: int = 5, worker_batches: int = 4) -> Breakdown:
    """Train with ``train.py``'s components and ``overrides`` (a ``plan=...`` among them) and time it."""
    setup = prepare(parse(compose_config(CONFIGS, "train", overrides)))
    L.seed_everything(setup.config.seed, workers=True)
    data, task = build_data(setup), build_task(setup)
    timer = BreakdownTimer()
    trainer = build_trainer(setup, RunFolder(run_folder), [timer])
    timer.device = trainer.strategy.root_device
    instrument(data, timer, trainer)
    trainer.fit(task, datamodule=data)
    device = trainer.strategy.root_device
    phases, first = timer.phases, timer.first_in_epoch
    steady = {k: _steady(v, first) for k, v in phases.items()}
    other = steady["iteration"] - sum(steady[k] for k in ("wait", "copy", "augment", "step"))
    bare = bare_step_seconds(setup, task.network, task.loss, timer.batch, device, bare_steps)
    iteration = [("waiting for the next batch (data workers)", steady["wait"]),
                 ("host -> device copy", steady["copy"]), ("augmentation on the device", steady["augment"]),
                 ("training step in Lightning", steady["step"]),
                 ("  the bare PyTorch step (measured apart)", bare),
                 ("  Lightning + logging (difference; negative = within noise)", steady["step"] - bare),
                 ("loop, between the hooks", max(other, 0.0)), ("iteration (steady state)", steady["iteration"])]
    ends = [*timer.epoch_starts[1:], timer.end]
    epochs = [end - start for start, end in zip(timer.epoch_starts, ends, strict=True)]
    later = [phases["wait"][i] for i in first[1:]]
    n_epochs, iterations = len(epochs), len(phases["iteration"]) / len(epochs)
    training = sum(phases["iteration"]) / n_epochs
    validation = statistics.mean(timer.validation) if timer.validation else 0.0
    checkpoint = sum(timer.checkpoint) / n_epochs
    epoch = [("first batch of the run (worker start-up)", phases["wait"][0]),
             ("first batch of a later epoch", statistics.mean(later) if later else float("nan")),
             (f"training iterations ({iterations:.0f})", training),
             (f"validation ({timer.validation_batches // max(len(timer.validation), 1)} batch(es))", validation),
             ("checkpoint saving (what the training thread waits for)", checkpoint),
             ("the rest (progress plot, loggers, epoch hooks)",
              statistics.mean(epochs) - training - validation - checkpoint),
             ("epoch (wall)", statistics.mean(epochs)),
             ("epoch overhead (epoch - iterations x steady iteration)",
              statistics.mean(epochs) - iterations * steady["iteration"])]
    workers = data.worker_counts()[0]
    title = provenance(f"{setup.facts.dataset} {setup.facts.configuration}: batch {setup.data.batch_size}, patch "
                       f"{list(setup.data.patch_size)} (initial {data.initial_patch_size}), precision "
                       f"{setup.config.trainer['precision']}, {workers} data workers, {n_epochs} epochs")
    return Breakdown(title, setup.data.batch_size, iteration, epoch, bare, workers,
                     worker_samples_per_second(setup, worker_batches))


def main(argv: list[str] | None = None) -> Breakdown | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, help="a raw dataset folder (default: a synthetic one)")
    parser.add_argument("--shape", type=int, nargs="+", default=[128, 160, 160], help="synthetic case shape")
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--cases", type=int, default=5, help="at least 5 (five folds)")
    parser.add_argument("--configuration", default="3d_fullres")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=250, help="per epoch (nnU-Net: 250)")
    parser.add_argument("--val-iterations", type=int, default=50, help="per epoch (nnU-Net: 50)")
    parser.add_argument("--workers", default="auto")
    parser.add_argument("--bare-steps", type=int, default=5)
    parser.add_argument("--workers-only", type=int, metavar="BATCHES",
                        help="only measure the data workers' rate per core over this many batches (no training)")
    parser.add_argument("--work", type=Path, help="keep the planned dataset here (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*", help="more train.py overrides, e.g. trainer.precision=bf16-mixed")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        work = (args.work or Path(scratch)).resolve()
        name = planned_dataset(work, args.dataset, args.shape, args.channels, args.cases, "Breakdown")
        overrides = [f"plan={name}/{args.configuration}", f"trainer.max_epochs={args.epochs}",
                     f"data.iterations_per_epoch={args.iterations}", f"data.val_iterations_per_epoch="
                     f"{args.val_iterations}", f"data.num_workers={args.workers}", *args.overrides]
        if args.workers_only:
            setup = prepare(parse(compose_config(CONFIGS, "train", overrides)))
            rate = worker_samples_per_second(setup, args.workers_only)
            print(provenance(f"{name} {args.configuration}: batch {setup.data.batch_size}, patch "
                             f"{list(setup.data.patch_size)}, {setup.facts.num_channels} channels"))
            print(f"data workers: {rate:.2f} samples/s per core (read + crop at the initial patch size)")
            return None
        result = measure(overrides, work / "run", args.bare_steps)
    print(result.table())
    return result


if __name__ == "__main__":
    main()
