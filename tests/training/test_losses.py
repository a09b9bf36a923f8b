"""Loss values equal hand-computed values on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nnlight.raw.labels import LabelLayout
from nnlight.training.losses import (
    DeepSupervisionLoss,
    LossSettings,
    SegmentationLoss,
    check_loss_fits,
    deep_supervision_weights,
    soft_dice_loss,
)
from nnlight.utils.errors import UserError

LABELS_2 = LabelLayout.from_mapping({"background": 0, "fg": 1})
WITH_IGNORE = LabelLayout.from_mapping({"background": 0, "fg": 1, "ignore": 2})
ONE_REGION = LabelLayout.from_mapping({"background": 0, "whole": [1, 2]}, [1])


def _loss(name: str, layout: LabelLayout = LABELS_2, **settings: object) -> SegmentationLoss:
    return SegmentationLoss(LossSettings(name=name, batch_dice=False, **settings), layout)  # type: ignore[arg-type]

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
    loss = _loss("dice_ce")(logits, target)
    assert loss.item() == pytest.approx(ce + dice, rel=1e-5)
    assert _loss("ce")(logits, target).item() == pytest.approx(ce, rel=1e-5)
    assert _loss("dice")(logits, target).item() == pytest.approx(dice, rel=1e-5)


def test_dice_smoothing_and_label_smoothing_are_settings() -> None:
    logits = torch.log(_probs())
    target = LABELS.view(1, 1, 4)
    assert _loss("dice", dice_smooth=0.0)(logits, target).item() == pytest.approx(-3 / 3.8, rel=1e-6)
    smoothed = F.cross_entropy(logits, LABELS[None], label_smoothing=0.1).item()
    assert _loss("ce", label_smoothing=0.1)(logits, target).item() == pytest.approx(smoothed, rel=1e-6)


def test_topk_uses_the_hardest_ten_percent() -> None:
    logits = torch.zeros(1, 2, 20)
    logits[0, 1, :2] = -5.0  # two voxels confidently wrong for label 1
    target = torch.ones(1, 1, 20, dtype=torch.long)
    expected = F.softplus(torch.tensor(5.0)).item()  # -log(sigmoid(-5))
    assert _loss("topk")(logits, target).item() == pytest.approx(expected, rel=1e-4)
    assert _loss("dice_topk", weight_dice=0.0)(logits, target).item() == pytest.approx(expected, rel=1e-4)


def test_ignore_label_is_excluded() -> None:
    logits = torch.log(_probs())
    target = torch.tensor([1, 0, 2, 2]).view(1, 1, 4)  # label 2 = ignore
    loss = _loss("dice_ce", WITH_IGNORE)(logits, target)
    ce = -(math.log(0.9) + math.log(0.8)) / 2
    dice = -(2 * 0.9 + 1e-5) / (0.9 + 0.2 + 1 + 1e-5)
    assert loss.item() == pytest.approx(ce + dice, rel=1e-5)


def test_region_datasets_train_dice_and_bce_on_sigmoid_outputs() -> None:
    """The dataset, not the loss name, makes dice_ce region-based: nnU-Net's DC_and_BCE_loss."""
    logits = torch.tensor([[[2.0, -2.0]]])  # 1 region, 2 voxels
    target = torch.tensor([[[1, 0]]])
    s = torch.sigmoid(torch.tensor(2.0)).item()
    bce = -(math.log(s) + math.log(s)) / 2
    dice = -(2 * s + 1e-5) / (s + (1 - s) + 1 + 1e-5)
    assert _loss("dice_ce", ONE_REGION)(logits, target).item() == pytest.approx(bce + dice, rel=1e-5)
    assert _loss("dice", ONE_REGION)(logits, target).item() == pytest.approx(dice, rel=1e-5)


def test_region_ignore_channel_masks_both_terms() -> None:
    """With an ignore label the last target channel marks ignored voxels (nnU-Net's layout)."""
    layout = LabelLayout.from_mapping({"background": 0, "whole": [1], "ignore": 2}, [1])
    logits = torch.tensor([[[2.0, -2.0, 9.0]]])  # the third voxel is ignored: its confident error must not count
    target = torch.tensor([[[1, 0, 0], [0, 0, 1]]])
    s = torch.sigmoid(torch.tensor(2.0)).item()
    bce = -(math.log(s) + math.log(s)) / 2
    dice = -(2 * s + 1e-5) / (s + (1 - s) + 1 + 1e-5)
    assert _loss("dice_ce", layout)(logits, target).item() == pytest.approx(bce + dice, rel=1e-5)


@pytest.mark.parametrize("name", ["ce", "topk", "dice_topk"])
def test_a_softmax_only_loss_on_a_region_dataset_is_refused(name: str) -> None:
    with pytest.raises(UserError, match=rf"loss.name={name} contradicts Dataset001_X: .*regions.*dice_ce, dice"):
        check_loss_fits(LossSettings(name=name), ONE_REGION, "Dataset001_X")  # type: ignore[arg-type]
    check_loss_fits(LossSettings(name=name), LABELS_2, "Dataset001_X")  # type: ignore[arg-type]


def test_deep_supervision_weights_and_wrapper() -> None:
    assert deep_supervision_weights(4) == pytest.approx([1 / 1.75, 0.5 / 1.75, 0.25 / 1.75, 0.0])
    assert deep_supervision_weights(1) == [1.0]
    loss = DeepSupervisionLoss(_loss("ce"), [0.75, 0.25, 0.0])
    outputs = [torch.zeros(1, 2, 4), torch.zeros(1, 2, 2), torch.zeros(1, 2, 1)]
    targets = [torch.zeros(1, 1, 4, dtype=torch.long), torch.zeros(1, 1, 2, dtype=torch.long),
               torch.zeros(1, 1, 1, dtype=torch.long)]
    assert loss(outputs, targets).item() == pytest.approx(math.log(2))


def test_a_users_loss_is_checked_on_a_dummy_batch_of_the_plans_layout() -> None:
    from nnlight.raw.labels import LabelLayout
    from nnlight.training.losses import CustomLoss, SegmentationLoss, check_loss
    from nnlight.utils.errors import UserError

    layout = LabelLayout.from_mapping({"background": 0, "a": 1, "b": 2})
    check_loss(SegmentationLoss(LossSettings(), layout), layout, 3)  # nnU-Net's loss passes its own check
    regions = LabelLayout.from_mapping({"background": 0, "whole": [1, 2], "core": 2}, [1, 2])
    check_loss(SegmentationLoss(LossSettings(), regions), regions, 2)
    per_voxel = CustomLoss("torch.nn.MSELoss", {"reduction": "none"}, {}, True).build(layout)
    with pytest.raises(UserError, match=r"loss failed on a dummy batch \(logits \[2, 3, 8, 8\], target \[2, 1, 8, 8\]"):
        check_loss(per_voxel, layout, 2)  # (2,3,8,8) vs (2,1,8,8): not one scalar
    detached = type("Detached", (torch.nn.Module,), {"forward": lambda self, x, t: x.detach().sum()})()
    with pytest.raises(UserError, match="does not require grad"):
        check_loss(detached, layout, 2)


THREE_CLASSES = LabelLayout.from_mapping({"background": 0, "a": 1, "b": 2})


def test_class_weights_weight_the_cross_entropy_and_the_dice_mean_over_classes() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 6, 5, generator=generator)
    target = torch.randint(0, 3, (2, 1, 6, 5), generator=generator).float()
    weights = [0.5, 1.0, 3.0]
    ce = _loss("ce", THREE_CLASSES, class_weights=weights)(logits, target)
    assert ce.item() == pytest.approx(F.cross_entropy(logits, target[:, 0].long(), weight=torch.tensor(weights)).item())
    onehot = F.one_hot(target[:, 0].long(), 3).movedim(-1, 1).float()
    probabilities = logits.softmax(1)
    per_class = [-soft_dice_loss(probabilities[:, [0, c]], onehot[:, [0, c]], False, do_bg=False).item()
                 for c in (1, 2)]
    dice = _loss("dice", THREE_CLASSES, class_weights=weights)(logits, target)
    assert dice.item() == pytest.approx(-(1.0 * per_class[0] + 3.0 * per_class[1]) / 4.0, rel=1e-5)
    unweighted = _loss("dice", THREE_CLASSES)(logits, target)  # nnU-Net's loss when no weights are given
    assert unweighted.item() == pytest.approx(-(per_class[0] + per_class[1]) / 2, rel=1e-5)


def test_class_weights_come_one_per_output_of_the_plan() -> None:
    with pytest.raises(UserError, match=r"loss.class_weights has 2 value\(s\); D's network has 3 output\(s\)"):
        check_loss_fits(LossSettings(class_weights=[1.0, 2.0]), THREE_CLASSES, "D")
    with pytest.raises(ValueError, match="one finite weight >= 0"):
        LossSettings(class_weights=[1.0, -1.0, 2.0])
