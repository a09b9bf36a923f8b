"""SegmentationTask: the one LightningModule, nnU-Net's recipe with every choice a typed argument."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from nnlight.model.network import CheckedNetwork
from nnlight.raw.labels import LabelLayout
from nnlight.training.losses import (
    CustomLoss,
    DeepSupervisionLoss,
    LossChoice,
    SegmentationLoss,
    deep_supervision_weights,
)
from nnlight.training.pseudo_dice import PseudoDice

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], Optimizer]
SchedulerFactory = Callable[[Optimizer], LRScheduler]
PSEUDO_DICE_EMA = 0.9  # nnU-Net: ema = 0.9 * ema + 0.1 * new


def _plain(value: Any) -> Any:
    """Checkpoints are loaded with ``weights_only=True``: hyperparameters must be plain lists, dicts, numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class SegmentationTask(L.LightningModule):
    def __init__(self, network: CheckedNetwork, layout: LabelLayout, loss: LossChoice,
                 optimizer: OptimizerFactory, scheduler: SchedulerFactory) -> None:
        """``network``: the network choice, checked for the plan (:func:`nnlight.model.network.check_network`)."""
        super().__init__()
        self.checked_network, self.layout = network, layout
        self.loss_settings = loss
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.save_hyperparameters(_plain({"network": network.record(), "facts": network.facts,
                                          "labels": dict(layout.labels), "loss": asdict(loss)}))
        self.network = self.configure_network()
        self.loss = self.configure_loss()
        self.pseudo_dice = self.configure_metrics()
        self.pseudo_dice_ema: float | None = None
        self.pseudo_dice_history: list[float] = []  # mean foreground pseudo Dice per validation epoch

    def configure_network(self) -> torch.nn.Module:
        """The chosen network (``network=``), built for the plan's facts."""
        return self.checked_network.choice.build(self.checked_network.facts)

    def configure_loss(self, distributed: bool = False) -> DeepSupervisionLoss:
        """The chosen loss on every output the network gives (weights 1/2^i, the lowest 0)."""
        settings = self.loss_settings
        one_output = settings.build(self.layout) if isinstance(settings, CustomLoss) else \
            SegmentationLoss(settings, self.layout)
        return DeepSupervisionLoss(one_output,
                                   deep_supervision_weights(self.checked_network.outputs,
                                                            lowest=1e-6 if distributed else 0.0))

    def configure_metrics(self) -> PseudoDice:
        """The per-epoch validation metric on patches (nnU-Net's pseudo Dice); a user's per-case metrics (the
        metrics group) score the end-of-training validation instead (:mod:`nnlight.evaluation.metrics`)."""
        return PseudoDice(self.layout)

    def setup(self, stage: str) -> None:
        if self.trainer is not None and self.trainer.world_size > 1:
            self.loss = self.configure_loss(distributed=True)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Logits per output resolution, highest first (one entry without deep supervision)."""
        outputs = self.network(images)
        return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]

    def training_step(self, batch: tuple[torch.Tensor, Sequence[torch.Tensor]], batch_idx: int) -> torch.Tensor:
        images, targets = batch
        loss = self.loss(self(images), targets)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=images.shape[0],
                 sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, Sequence[torch.Tensor]], batch_idx: int) -> torch.Tensor:
        """Logs the loss and counts the pseudo Dice; returns the full-resolution logits (for ValidationImages)."""
        images, targets = batch
        outputs = self(images)
        # a network that gives one output in eval mode (MONAI's MedNeXt) is validated on the full-resolution loss
        loss = self.loss(outputs, targets) if len(outputs) == len(targets) else self.loss.loss(outputs[0], targets[0])
        self.log("val/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=images.shape[0],
                 sync_dist=True)
        self.pseudo_dice.update(outputs[0], targets[0])
        return outputs[0].detach()

    def on_validation_epoch_end(self) -> None:
        dice = self.pseudo_dice.per_class()  # summed over all ranks: the same value everywhere
        self.pseudo_dice.reset()
        if self.trainer.sanity_checking:  # the sanity check is not an epoch
            return
        present = ~dice.isnan()
        mean = float(dice[present].mean()) if present.any() else 0.0
        self.pseudo_dice_history.append(mean)
        self.pseudo_dice_ema = mean if self.pseudo_dice_ema is None else \
            PSEUDO_DICE_EMA * self.pseudo_dice_ema + (1 - PSEUDO_DICE_EMA) * mean
        self.log("val/pseudo_dice", mean, prog_bar=True, sync_dist=True)
        self.log("val/pseudo_dice_ema", self.pseudo_dice_ema, prog_bar=True, sync_dist=True)
        for c, value in enumerate(dice.tolist(), start=1):
            self.log(f"val/pseudo_dice_{c}", value, sync_dist=True)

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        optimizer = self.optimizer_factory(self.network.parameters())
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["pseudo_dice_ema"] = self.pseudo_dice_ema

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.pseudo_dice_ema = checkpoint.get("pseudo_dice_ema")
