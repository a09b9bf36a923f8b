"""Pruning of a search's trial: each epoch's validation value goes to the Optuna study, and a trial the pruner
calls clearly worse than the others at the same epoch stops there (``hydra.sweeper.pruner=median|hyperband``)."""

from __future__ import annotations

import os
from typing import Any

import lightning as L

from hydra_plugins.nnlight_optuna.search import TRIAL_ENV, make_pruner


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


def trial_pruning(sweeper: Any, optimized_metric: str | None) -> TrialPruning | None:
    """The callback for a run that is a trial of a search with a pruner (``sweeper``: the run's Hydra sweeper
    config); None for any other run."""
    trial_id = os.environ.get(TRIAL_ENV)
    if trial_id is None or not str(sweeper.get("_target_", "")).endswith(".OptunaSearch"):
        return None
    import optuna

    pruner = make_pruner(str(sweeper.pruner), int(sweeper.pruner_startup_trials), int(sweeper.pruner_warmup_epochs))
    study = optuna.load_study(study_name=str(sweeper.study_name), storage=str(sweeper.storage), pruner=pruner)
    return TrialPruning(optuna.trial.Trial(study, int(trial_id)), per_epoch_metric(optimized_metric))
