"""Loss values equal hand-computed values on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nnlight.training.losses import (
    DeepSupervisionLoss,
    SegmentationLoss,
    deep_supervision_weights,
    soft_dice_loss,
)

# 1 sample, 2 classes, 4 voxels: probabilities for class 1 and the label map
P1 = torch.tensor([0.9, 0.2, 0.6, 0.1])
LABELS = torch.tensor([1, 0, 1, 0])


def _probs() -> torch.Tensor:
    return torch.stack([1 - P1, P1])[None]  # (1, 2, 4)


def test_soft_dice_without_background_by_hand() -> None:
    onehot = F.one_hot(LABELS, 2).T[None].float()
    intersect, sum_pred, sum_gt = 0.9 + 0.6, 0.9 + 0.2 + 0.6 + 0.1, 2.0
    expected = -(2 * intersect + 1e-5) / (sum_pred + sum_gt + 1e-5)
    assert soft_dice_loss(_probs(), onehot, batch_dice=False, do_bg=False).item() == pytest.approx(expected)


def test_batch_dice_pools_samples_before_the_ratio() -> None:
    # 2 samples, 2 classes, 2 voxels; sample 2 has no foreground but predicts it everywhere
    probs = torch.tensor([[[0.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [1.0, 1.0]]])
    onehot = torch.tensor([[[0.0, 0.0], [1.0, 1.0]], [[1.0, 1.0], [0.0, 0.0]]])
    per_sample = soft_dice_loss(probs, onehot, batch_dice=False, do_bg=False).item()
    pooled = soft_dice_loss(probs, onehot, batch_dice=True, do_bg=False).item()
    s = 1e-5
    assert per_sample == pytest.approx(-((4 + s) / (4 + s) + s / (2 + s)) / 2)
    assert pooled == pytest.approx(-(4 + s) / (6 + s))


def test_dice_ce_is_the_sum_of_both_by_hand() -> None:
    logits = torch.log(_probs())
    target = LABELS.view(1, 1, 4)
    ce = -sum(math.log(p if y else 1 - p) for p, y in zip(P1.tolist(), LABELS.tolist(), strict=True)) / 4
    dice = -(2 * 1.5 + 1e-5) / (1.8 + 2 + 1e-5)
    loss = SegmentationLoss("dice_ce", batch_dice=False)(logits, target)
    assert loss.item() == pytest.approx(ce + dice, rel=1e-5)
    assert SegmentationLoss("ce", batch_dice=False)(logits, target).item() == pytest.approx(ce, rel=1e-5)
    assert SegmentationLoss("dice", batch_dice=False)(logits, target).item() == pytest.approx(dice, rel=1e-5)


def test_topk_uses_the_hardest_ten_percent() -> None:
    logits = torch.zeros(1, 2, 20)
    logits[0, 1, :2] = -5.0  # two voxels confidently wrong for label 1
    target = torch.ones(1, 1, 20, dtype=torch.long)
    loss = SegmentationLoss("dice_topk10", batch_dice=False, weight_dice=0.0)(logits, target)
    assert loss.item() == pytest.approx(F.softplus(torch.tensor(5.0)).item(), rel=1e-4)  # -log(sigmoid(-5))


def test_ignore_label_is_excluded() -> None:
    logits = torch.log(_probs())
    target = torch.tensor([1, 0, 2, 2]).view(1, 1, 4)  # label 2 = ignore
    loss = SegmentationLoss("dice_ce", batch_dice=False, ignore_label=2)(logits, target)
    ce = -(math.log(0.9) + math.log(0.8)) / 2
    dice = -(2 * 0.9 + 1e-5) / (0.9 + 0.2 + 1 + 1e-5)
    assert loss.item() == pytest.approx(ce + dice, rel=1e-5)


def test_region_dice_bce() -> None:
    logits = torch.tensor([[[2.0, -2.0]]])  # 1 region, 2 voxels
    target = torch.tensor([[[1, 0]]])
    s = torch.sigmoid(torch.tensor(2.0)).item()
    bce = -(math.log(s) + math.log(s)) / 2
    dice = -(2 * s + 1e-5) / (s + (1 - s) + 1 + 1e-5)
    assert SegmentationLoss("dice_bce", batch_dice=False)(logits, target).item() == pytest.approx(bce + dice, rel=1e-5)


def test_deep_supervision_weights_and_wrapper() -> None:
    assert deep_supervision_weights(4) == pytest.approx([1 / 1.75, 0.5 / 1.75, 0.25 / 1.75, 0.0])
    assert deep_supervision_weights(1) == [1.0]
    loss = DeepSupervisionLoss(SegmentationLoss("ce", batch_dice=False), [0.75, 0.25, 0.0])
    outputs = [torch.zeros(1, 2, 4), torch.zeros(1, 2, 2), torch.zeros(1, 2, 1)]
    targets = [torch.zeros(1, 1, 4, dtype=torch.long), torch.zeros(1, 1, 2, dtype=torch.long),
               torch.zeros(1, 1, 1, dtype=torch.long)]
    assert loss(outputs, targets).item() == pytest.approx(math.log(2))
