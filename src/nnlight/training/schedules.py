"""Learning-rate schedules as functions of the epoch (stepped once per epoch, as nnU-Net does).

The poly schedule runs over the *configured* number of epochs, so ``trainer.max_epochs=100`` gives a full
decay in 100 epochs rather than the first tenth of nnU-Net's 1000.
"""

from __future__ import annotations

import math
from typing import Literal

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

ScheduleName = Literal["poly", "cosine", "warmup_poly"]


def lr_factor(name: ScheduleName, epoch: int, max_epochs: int, exponent: float = 0.9,
              warmup_epochs: int = 0) -> float:
    """Multiplier of the initial learning rate at the start of ``epoch`` (0-based)."""
    if name == "poly":
        return (1 - epoch / max_epochs) ** exponent
    if name == "cosine":
        return 0.5 * (1 + math.cos(math.pi * epoch / max_epochs))
    if name == "warmup_poly":
        if epoch < warmup_epochs:
            return (epoch + 1) / (warmup_epochs + 1)
        return (1 - (epoch - warmup_epochs) / max(max_epochs - warmup_epochs, 1)) ** exponent
    raise ValueError(f"unknown schedule {name!r}; choose poly, cosine or warmup_poly")


def epoch_scheduler(optimizer: Optimizer, name: ScheduleName, max_epochs: int, exponent: float = 0.9,
                    warmup_epochs: int = 0) -> LambdaLR:
    return LambdaLR(optimizer, lambda epoch: lr_factor(name, epoch, max_epochs, exponent, warmup_epochs))
