"""nnU-Net's losses: soft Dice (+ CE / TopK CE / BCE for regions), wrapped for deep supervision.

Every variant is a value of ``loss.name`` (``dice_ce`` default, ``dice``, ``ce``, ``dice_topk10``, ``dice_bce``),
never a subclass: the training code asks ``build_loss`` for one and does not care which.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

LossName = Literal["dice_ce", "dice", "ce", "dice_topk10", "dice_bce"]
DICE_SMOOTH = 1e-5


def soft_dice_loss(probabilities: torch.Tensor, target_onehot: torch.Tensor, batch_dice: bool, do_bg: bool,
                   mask: torch.Tensor | None = None, smooth: float = DICE_SMOOTH) -> torch.Tensor:
    """``-mean(dice)`` over classes (and samples unless ``batch_dice``), nnU-Net's memory-efficient soft Dice."""
    if not do_bg:
        probabilities, target_onehot = probabilities[:, 1:], target_onehot[:, 1:]
    axes = tuple(range(2, probabilities.ndim))
    if mask is not None:
        probabilities, target_onehot = probabilities * mask, target_onehot * mask
    intersect = (probabilities * target_onehot).sum(axes, dtype=torch.float32)
    sum_pred = probabilities.sum(axes, dtype=torch.float32)
    sum_gt = target_onehot.sum(axes, dtype=torch.float32)
    if batch_dice:
        intersect, sum_pred, sum_gt = intersect.sum(0), sum_pred.sum(0), sum_gt.sum(0)
    dice = (2 * intersect + smooth) / (sum_gt + sum_pred + smooth).clamp_min(1e-8)
    return -dice.mean()


def topk_cross_entropy(logits: torch.Tensor, target: torch.Tensor, k_percent: float,
                       ignore_index: int = -100) -> torch.Tensor:
    """Mean CE over the ``k_percent`` % hardest voxels (nnU-Net's TopKLoss)."""
    losses = F.cross_entropy(logits, target, reduction="none", ignore_index=ignore_index).flatten()
    k = max(int(losses.numel() * k_percent / 100), 1)
    return losses.topk(k, sorted=False).values.mean()


class SegmentationLoss(nn.Module):
    """One resolution's loss. Targets are label maps ``(b, 1, ...)``, or one channel per region for ``dice_bce``."""

    def __init__(self, name: LossName, batch_dice: bool, ignore_label: int | None = None,
                 weight_ce: float = 1.0, weight_dice: float = 1.0) -> None:
        super().__init__()
        self.name, self.batch_dice, self.ignore_label = name, batch_dice, ignore_label
        self.weight_ce = 0.0 if name == "dice" else weight_ce
        self.weight_dice = 0.0 if name == "ce" else weight_dice

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.name == "dice_bce":
            return self._dice_bce(logits, target)
        labels = target[:, 0].long()
        mask = None
        if self.ignore_label is not None:
            mask = (labels != self.ignore_label)[:, None].float()
            labels = torch.where(mask[:, 0].bool(), labels, torch.zeros_like(labels))
        loss = logits.new_zeros(())
        if self.weight_dice:
            onehot = F.one_hot(labels, logits.shape[1]).movedim(-1, 1).to(logits.dtype)
            loss = loss + self.weight_dice * soft_dice_loss(logits.softmax(1), onehot, self.batch_dice, do_bg=False,
                                                            mask=mask)
        if self.weight_ce and (mask is None or mask.sum() > 0):
            ce_target = target[:, 0].long()
            ignore = self.ignore_label if self.ignore_label is not None else -100
            ce = topk_cross_entropy(logits, ce_target, 10, ignore) if self.name == "dice_topk10" else \
                F.cross_entropy(logits, ce_target, ignore_index=ignore)
            loss = loss + self.weight_ce * ce
        return loss

    def _dice_bce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Region-based training: sigmoid per region, BCE + soft Dice including every channel."""
        target = target.to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(logits, target)
        dice = soft_dice_loss(logits.sigmoid(), target, self.batch_dice, do_bg=True)
        return self.weight_ce * bce + self.weight_dice * dice


def deep_supervision_weights(num_outputs: int, lowest: float = 0.0) -> list[float]:
    """1/2^i per output (highest resolution first), the lowest resolution weighted ``lowest``, normalized to sum 1.

    Under DDP nnU-Net uses ``lowest=1e-6``: a head that never contributes to the loss has no gradient, which
    DDP treats as an error.
    """
    weights = [1 / 2**i for i in range(num_outputs)]
    if num_outputs > 1:
        weights[-1] = lowest
    total = sum(weights)
    return [w / total for w in weights]


class DeepSupervisionLoss(nn.Module):
    def __init__(self, loss: nn.Module, weights: Sequence[float]) -> None:
        super().__init__()
        self.loss = loss
        self.weights = list(weights)

    def forward(self, outputs: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
        return sum(w * self.loss(o, t) for w, o, t in zip(self.weights, outputs, targets, strict=True) if w != 0)
