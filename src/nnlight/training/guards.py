"""Training that has stopped learning is stopped, not recorded as finished."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from nnlight.utils.errors import UserError


class TrainingDiverged(UserError):
    """The training loss stayed NaN or Inf: the weights no longer learn (a learning rate too high, broken data)."""


class NonFiniteLossStop(L.Callback):
    """Stops the run once the training loss has been NaN or Inf for ``patience`` steps in a row (on any rank:
    every rank stops together). The error ends the run like any other failure: ``failure.json``, no
    ``run_stats.json``, so the run never counts as finished."""

    def __init__(self, patience: int) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise UserError(f"nonfinite_loss_patience={patience}: use a whole number of training steps >= 1")
        self.patience, self.in_a_row = patience, 0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        nonfinite = isinstance(loss, torch.Tensor) and not bool(torch.isfinite(loss.detach()).all())
        nonfinite = trainer.strategy.reduce_boolean_decision(nonfinite, all=False)
        self.in_a_row = self.in_a_row + 1 if nonfinite else 0
        if self.in_a_row >= self.patience:
            lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
            raise TrainingDiverged(
                f"training stopped at epoch {trainer.current_epoch}, step {trainer.global_step}: the training loss was "
                f"NaN or Inf for {self.in_a_row} steps in a row, so the network no longer learns; the run is not "
                f"finished (see failure.json in {trainer.default_root_dir}). Lower optimizer.lr"
                + (f" (now {lr:g})" if lr is not None else "") + " or check the data, then train again")
