"""nnU-Net's learning-rate schedules as torch LR schedulers, stepped once per epoch (as nnU-Net does).

The ``scheduler`` group names one with ``_target_`` (these, or any ``torch.optim.lr_scheduler`` class such as
``CosineAnnealingLR``); ``max_epochs`` is interpolated from ``trainer.max_epochs``, so
``trainer.max_epochs=100`` gives a full decay in 100 epochs rather than the first tenth of nnU-Net's 1000.
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


def poly_factor(epoch: int, max_epochs: int, exponent: float = 0.9) -> float:
    """``(1 - epoch / max_epochs) ** exponent``: nnU-Net's PolyLRScheduler, clamped at the end."""
    return max(1 - epoch / max_epochs, 0.0) ** exponent


def warmup_poly_factor(epoch: int, max_epochs: int, warmup_epochs: int, exponent: float = 0.9) -> float:
    """nnUNetTrainer_warmup: ``(epoch + 1) / warmup`` for the first ``warmup`` epochs (Lin_incr_LRScheduler),
    then poly over the remaining epochs (PolyLRScheduler_offset)."""
    if epoch < warmup_epochs:
        return (epoch + 1) / warmup_epochs
    return poly_factor(epoch - warmup_epochs, max_epochs - warmup_epochs, exponent)


class PolyLR(LRScheduler):
    """nnU-Net's default schedule: ``lr * (1 - epoch / max_epochs) ** 0.9``."""

    def __init__(self, optimizer: Optimizer, max_epochs: int, exponent: float = 0.9, last_epoch: int = -1) -> None:
        if max_epochs < 1:
            raise ValueError(f"max_epochs={max_epochs}: needs at least 1 epoch")
        self.max_epochs, self.exponent = max_epochs, exponent
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float | torch.Tensor]:
        factor = poly_factor(self.last_epoch, self.max_epochs, self.exponent)
        return [base * factor for base in self.base_lrs]


class WarmupPolyLR(LRScheduler):
    """nnUNetTrainer_warmup: linear warm-up over ``warmup_epochs``, then poly decay to ``max_epochs``."""

    def __init__(self, optimizer: Optimizer, max_epochs: int, warmup_epochs: int = 50, exponent: float = 0.9,
                 last_epoch: int = -1) -> None:
        if not 0 < warmup_epochs < max_epochs:
            raise ValueError(f"warmup_epochs={warmup_epochs} must be between 1 and max_epochs - 1 ({max_epochs - 1})")
        self.max_epochs, self.warmup_epochs, self.exponent = max_epochs, warmup_epochs, exponent
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float | torch.Tensor]:
        factor = warmup_poly_factor(self.last_epoch, self.max_epochs, self.warmup_epochs, self.exponent)
        return [base * factor for base in self.base_lrs]
