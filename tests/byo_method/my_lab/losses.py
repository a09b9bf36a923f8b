"""A lab's own loss: focal cross-entropy (Lin et al. 2017) for label datasets, ignore label respected."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """``mean((1 - p_t)^gamma * CE)`` over the voxels that are not ignored."""

    def __init__(self, gamma: float = 2.0, ignore_label: int | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        self.ignore_index = -100 if ignore_label is None else ignore_label

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labels = target[:, 0].long()
        ce = F.cross_entropy(logits, labels, reduction="none", ignore_index=self.ignore_index)
        weight = (1 - torch.exp(-ce)) ** self.gamma
        valid = labels != self.ignore_index
        return (weight * ce)[valid].sum() / valid.sum().clamp_min(1)
