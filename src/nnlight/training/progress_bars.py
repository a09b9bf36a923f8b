"""Training progress on the screen and in logs: Lightning's bar on a terminal (without its ``v_num``: the logger's
version, meaningless beside a run folder); plain lines where the output is a file or pipe (CI logs, SLURM ``.out``
files, ``| tee``): one line per finished epoch with its losses and scores, and within a long epoch a line every
:data:`~nnlight.utils.console_progress.PLAIN_INTERVAL_S` seconds."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar

from nnlight.utils.console_progress import Throttle, on_terminal


def _shown(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k != "v_num"}


class BarProgress(TQDMProgressBar):
    """Lightning's tqdm bar, without ``v_num``."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        return _shown(super().get_metrics(trainer, pl_module))


class LineProgress(ProgressBar):
    """Plain lines, no carriage returns or escape codes."""

    def __init__(self) -> None:
        super().__init__()
        self.enabled, self.throttle, self.epoch_started = True, Throttle(None), 0.0

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def _epoch(self, trainer: L.Trainer) -> str:
        return f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.throttle = Throttle(None)  # within an epoch, a line every PLAIN_INTERVAL_S: one per epoch is the rule
        self.epoch_started = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        done, total = batch_idx + 1, self.total_train_batches
        if not self.enabled or done >= total or not self.throttle.due(done):
            return
        seconds = time.monotonic() - self.epoch_started
        print(f"{self._epoch(trainer)}: {done}/{int(total)} iterations, {seconds:.0f} s ({done / seconds:.2f} it/s)",
              flush=True)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.enabled:
            return
        scores = ", ".join(f"{k} {float(v):.4g}" for k, v in _shown(self.get_metrics(trainer, pl_module)).items())
        print(f"{self._epoch(trainer)} done in {time.monotonic() - self.epoch_started:.1f} s: {scores}", flush=True)


def progress_bar() -> ProgressBar:
    """The bar for where the output goes: a terminal redraws one, a log file gets lines."""
    return BarProgress() if on_terminal() else LineProgress()
