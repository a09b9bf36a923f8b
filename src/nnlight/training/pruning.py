"""Pruning of a search's trial: each epoch's validation value goes to the Optuna study, and a trial the pruner
calls clearly worse than the others at the same epoch stops there (``hydra.sweeper.pruner=median|hyperband``)."""

from __future__ import annotations

from typing import Any

import lightning as L


def per_epoch_metric(optimized_metric: str | None) -> str:
    """The value logged every epoch that stands for the optimized one: the end-of-training validation Dice is known
    only at the end, so its running estimate (nnU-Net's EMA pseudo Dice) is reported meanwhile."""
    return "val/pseudo_dice_ema" if optimized_metric in (None, "validation_dice") else optimized_metric


class TrialPruning(L.Callback):
    """Reports ``metric`` after each validation epoch to the trial; stops training when the pruner says so and
    marks the trial (``pruned_at_epoch``) so that the sweeper records it as pruned, not finished."""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial, self.metric = trial, metric
        self.pruned_at_epoch: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """After the module's own epoch-end hook (a callback's ``on_validation_epoch_end`` runs before it, when
        this epoch's value is not logged yet)."""
        if trainer.sanity_checking or not trainer.is_global_zero or self.metric not in trainer.callback_metrics:
            return
        epoch = trainer.current_epoch
        self.trial.report(float(trainer.callback_metrics[self.metric]), step=epoch)
        if self.trial.should_prune():
            self.trial.set_user_attr("pruned_at_epoch", epoch)
            self.pruned_at_epoch = epoch
            print(f"Pruned by the search at epoch {epoch}: {self.metric} is clearly below the other trials'")
            trainer.should_stop = True

