"""Lightning's overhead: one SegmentationTask training step vs. a bare PyTorch loop, same network/batch/precision.

    python -m benchmarks.lightning_overhead data/preprocessed/Dataset104_DRIVE --configuration 2d --steps 6

Both sides train on the same augmented batch (so data loading is out of the comparison) with SGD, deep-
supervised Dice+CE and gradient clipping at 12; the first step of each is warm-up and not counted.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from benchmarks._common import provenance, setup


class _SameBatch(Dataset):
    """The one pre-augmented batch, ``length`` times: the loop under test, not the data pipeline."""

    def __init__(self, batch: object, length: int) -> None:
        self.batch, self.length = batch, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> object:
        return self.batch


class StepTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: object,
                             batch_idx: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: object, batch: object,
                           batch_idx: int) -> None:
        self.times.append(time.perf_counter() - self._start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset_folder")
    parser.add_argument("--configuration", default="3d_fullres")
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    plan, data, task = setup(Path(args.dataset_folder), args.configuration, 1, 0)
    data.setup("fit")
    batch = data.on_after_batch_transfer(next(iter(data.train_dataloader())), 0)

    torch.manual_seed(0)
    network, loss_fn = task.network, task.loss
    optimizer = torch.optim.SGD(network.parameters(), lr=1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
    bare = []
    for _ in range(args.steps + 1):
        start = time.perf_counter()
        loss = loss_fn(network(batch[0]), batch[1])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 12)
        optimizer.step()
        bare.append(time.perf_counter() - start)

    timer = StepTimer()
    trainer = L.Trainer(max_epochs=1, limit_train_batches=args.steps + 1, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        gradient_clip_val=12, callbacks=[timer], num_sanity_val_steps=0, precision="32")
    trainer.fit(task, train_dataloaders=DataLoader(_SameBatch(batch, args.steps + 1), batch_size=None))
    bare_step, lightning_step = statistics.median(bare[1:]), statistics.median(timer.times[1:])
    print(provenance(f"{Path(args.dataset_folder).name} {args.configuration}, batch {plan.batch_size}, "
                     f"patch {plan.patch_size}, fp32, {args.steps} timed steps each"))
    print(f"bare PyTorch step {bare_step:.3f} s | Lightning SegmentationTask step {lightning_step:.3f} s | "
          f"overhead {100 * (lightning_step / bare_step - 1):+.1f} %")


if __name__ == "__main__":
    main()
