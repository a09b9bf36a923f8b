"""Training throughput: a few short epochs without checkpoints; prints the fastest epoch and samples/s.

    python -m benchmarks.train_throughput data/preprocessed/Dataset104_DRIVE --configuration 2d
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import lightning as L

from benchmarks._common import provenance, setup


class EpochTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.times.append(time.perf_counter() - self._start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset_folder")
    parser.add_argument("--configuration", default="3d_fullres")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--precision", default="32")
    args = parser.parse_args()
    plan, data, task = setup(Path(args.dataset_folder), args.configuration, args.iterations, args.workers)
    timer = EpochTimer()
    trainer = L.Trainer(max_epochs=args.epochs, limit_val_batches=0, enable_checkpointing=False, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, precision=args.precision,
                        gradient_clip_val=12, callbacks=[timer], num_sanity_val_steps=0)
    trainer.fit(task, datamodule=data)
    fastest = min(timer.times)
    print(provenance(f"{Path(args.dataset_folder).name} {args.configuration}, batch {plan.batch_size}, "
                     f"patch {plan.patch_size}, precision {args.precision}"))
    print(f"epochs of {args.iterations} iterations: {', '.join(f'{t:.1f}' for t in timer.times)} s")
    print(f"fastest epoch {fastest:.1f} s = {args.iterations * plan.batch_size / fastest:.3f} samples/s")


if __name__ == "__main__":
    main()
