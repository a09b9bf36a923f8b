"""nnU-Net's training-time "pseudo Dice" as a torchmetrics Metric.

TP/FP/FN per foreground class (or region) are summed over the validation patches of an epoch — on every DDP
rank, reduced by torchmetrics — and the Dice is computed from the sums (nnU-Net's ``on_validation_epoch_end``).
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

from nnlight.raw.labels import LabelLayout


class PseudoDice(Metric):
    """Dice per foreground class/region from summed counts; NaN for a class absent from patches and predictions."""

    full_state_update = False
    tp: torch.Tensor  # summed counts per class, states of the Metric (reduced across processes)
    fp: torch.Tensor
    fn: torch.Tensor

    def __init__(self, layout: LabelLayout) -> None:
        super().__init__()
        self.region_based = layout.has_regions
        self.ignore_label = layout.ignore_label
        classes = len(layout.foreground)
        for name in ("tp", "fp", "fn"):
            self.add_state(name, default=torch.zeros(classes, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """``logits`` of the highest-resolution output; ``target`` as the loss receives it."""
        if self.region_based:
            valid = None
            if self.ignore_label is not None:  # the last target channel marks the ignore label
                valid, target = ~target[:, -1:].bool(), target[:, :-1]
            predicted, truth = logits.sigmoid() > 0.5, target.bool()
        else:
            classes = torch.arange(1, logits.shape[1], device=logits.device).view(1, -1, *[1] * (logits.ndim - 2))
            predicted, truth = logits.argmax(1, keepdim=True) == classes, target == classes
            valid = target != self.ignore_label if self.ignore_label is not None else None
        if valid is not None:
            predicted, truth = predicted & valid, truth & valid
        axes = [0, *range(2, logits.ndim)]
        self.tp += (predicted & truth).sum(axes).double()
        self.fp += (predicted & ~truth).sum(axes).double()
        self.fn += (~predicted & truth).sum(axes).double()

    def compute(self) -> torch.Tensor:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn)

    def per_class(self) -> torch.Tensor:
        """One value per class, also for a single foreground class (torchmetrics squeezes that to a scalar)."""
        return self.compute().reshape(-1)
