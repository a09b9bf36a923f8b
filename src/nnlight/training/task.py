"""SegmentationTask: the one LightningModule, nnU-Net's recipe with every choice a typed argument."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import torch

from nnlight.nets import build_network
from nnlight.nets.unet import NetworkName
from nnlight.training.losses import DeepSupervisionLoss, LossName, SegmentationLoss, deep_supervision_weights
from nnlight.training.schedules import ScheduleName, epoch_scheduler

OptimizerName = Literal["sgd_nesterov", "adam", "adamw"]
PSEUDO_DICE_EMA = 0.9  # nnU-Net: ema = 0.9 * ema + 0.1 * new


class SegmentationTask(L.LightningModule):
    def __init__(self, network: NetworkName, network_kwargs: dict[str, Any], input_channels: int, num_classes: int,
                 loss: LossName = "dice_ce", batch_dice: bool = True, ignore_label: int | None = None,
                 optimizer: OptimizerName = "sgd_nesterov", lr: float = 1e-2, momentum: float = 0.99,
                 weight_decay: float = 3e-5, schedule: ScheduleName = "poly", poly_exponent: float = 0.9,
                 warmup_epochs: int = 0, max_epochs: int = 1000) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.network = self.configure_network()
        self.loss = self.configure_loss()
        self.region_based = loss == "dice_bce"
        self._counts: torch.Tensor | None = None  # per-class TP, FP, FN over the validation epoch
        self.pseudo_dice_ema: float | None = None
        self.pseudo_dice_history: list[float] = []  # mean foreground pseudo Dice per validation epoch

    def configure_network(self) -> torch.nn.Module:
        h = self.hparams
        return build_network(h.network, input_channels=h.input_channels, num_classes=h.num_classes,
                             deep_supervision=True, **h.network_kwargs)

    def configure_loss(self, distributed: bool = False) -> DeepSupervisionLoss:
        h = self.hparams
        outputs = len(h.network_kwargs["strides"]) - 1
        return DeepSupervisionLoss(SegmentationLoss(h.loss, h.batch_dice, h.ignore_label),
                                   deep_supervision_weights(outputs, lowest=1e-6 if distributed else 0.0))

    def setup(self, stage: str) -> None:
        if self.trainer is not None and self.trainer.world_size > 1:
            self.loss = self.configure_loss(distributed=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.network(images)

    def training_step(self, batch: tuple[torch.Tensor, Sequence[torch.Tensor]], batch_idx: int) -> torch.Tensor:
        images, targets = batch
        loss = self.loss(self.network(images), targets)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=images.shape[0],
                 sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, Sequence[torch.Tensor]], batch_idx: int) -> None:
        images, targets = batch
        outputs = self.network(images)
        loss = self.loss(outputs, targets)
        self.log("val/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=images.shape[0],
                 sync_dist=True)
        counts = self._confusion(outputs[0], targets[0])
        self._counts = counts if self._counts is None else self._counts + counts

    def _confusion(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Foreground TP/FP/FN per class (or region) on the highest-resolution output, as nnU-Net's pseudo Dice."""
        if self.region_based:
            predicted, truth = logits.sigmoid() > 0.5, target.bool()
        else:
            classes = torch.arange(1, logits.shape[1], device=logits.device).view(1, -1, *[1] * (logits.ndim - 2))
            predicted, truth = logits.argmax(1, keepdim=True) == classes, target == classes
            if self.hparams.ignore_label is not None:
                valid = target != self.hparams.ignore_label
                predicted, truth = predicted & valid, truth & valid
        axes = [0, *range(2, logits.ndim)]
        return torch.stack([(predicted & truth).sum(axes), (predicted & ~truth).sum(axes),
                            (~predicted & truth).sum(axes)]).double()

    def on_validation_epoch_end(self) -> None:
        if self._counts is None or self.trainer.sanity_checking:  # the sanity check is not an epoch
            self._counts = None
            return
        counts = self.all_gather(self._counts).view(-1, *self._counts.shape).sum(0)
        tp, fp, fn = counts
        dice = 2 * tp / (2 * tp + fp + fn)
        mean = float(dice[~dice.isnan()].mean()) if (~dice.isnan()).any() else 0.0
        self.pseudo_dice_history.append(mean)
        self.pseudo_dice_ema = mean if self.pseudo_dice_ema is None else \
            PSEUDO_DICE_EMA * self.pseudo_dice_ema + (1 - PSEUDO_DICE_EMA) * mean
        # computed from counts gathered over all ranks: the same value everywhere
        self.log("val/pseudo_dice", mean, prog_bar=True, sync_dist=True)
        self.log("val/pseudo_dice_ema", self.pseudo_dice_ema, prog_bar=True, sync_dist=True)
        for c, value in enumerate(dice.tolist(), start=1):
            self.log(f"val/pseudo_dice_{c}", value, sync_dist=True)
        self._counts = None

    def configure_optimizers(self) -> dict[str, Any]:
        h = self.hparams
        params = self.network.parameters()
        if h.optimizer == "sgd_nesterov":
            optimizer = torch.optim.SGD(params, lr=h.lr, momentum=h.momentum, nesterov=True,
                                        weight_decay=h.weight_decay)
        elif h.optimizer == "adam":
            optimizer = torch.optim.Adam(params, lr=h.lr, weight_decay=h.weight_decay)
        else:
            optimizer = torch.optim.AdamW(params, lr=h.lr, weight_decay=h.weight_decay)
        scheduler = epoch_scheduler(optimizer, h.schedule, h.max_epochs, h.poly_exponent, h.warmup_epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["pseudo_dice_ema"] = self.pseudo_dice_ema

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.pseudo_dice_ema = checkpoint.get("pseudo_dice_ema")
