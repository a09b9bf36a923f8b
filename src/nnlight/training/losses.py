"""nnU-Net's losses: soft Dice + cross-entropy (or Top-k CE), wrapped for deep supervision; or a user's loss.

The loss group names *which terms* are used (``dice_ce`` default, ``dice``, ``ce``, ``topk``, ``dice_topk``);
the dataset decides *how*: a label dataset trains softmax outputs (Dice without background + CE), a region
dataset sigmoid outputs (Dice over every region + BCE), and an ignore label is masked out of both terms —
exactly nnU-Net's ``DC_and_CE_loss`` / ``DC_and_BCE_loss`` / ``DC_and_topk_loss``.

A user's loss (``loss=custom loss._target_=...`` or a YAML of its own) is an ``nn.Module`` class:
``forward(logits, target)`` returns a scalar for one output resolution, where ``logits`` are the raw network
outputs ``(batch, num_classes, *size)`` and ``target`` is in the plan's label layout (:class:`SegmentationLoss`:
a label map ``(batch, 1, *size)`` holding the ignore label where there is one, or for region datasets one 0/1
channel per region plus a last channel marking ignored voxels). Its constructor may take :data:`LOSS_FACTS`
from the plan (``from_plan``). nnlight weights it over the deep-supervision outputs and checks it on a dummy
batch before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from nnlight.raw.labels import LabelLayout
from nnlight.utils.components import locate_class
from nnlight.utils.errors import UserError

LossName = Literal["dice_ce", "dice", "ce", "topk", "dice_topk"]
DICE_SMOOTH = 1e-5


@dataclass(frozen=True)
class LossSettings:
    """The ``loss`` group (``configs/loss/*.yaml``)."""

    name: LossName = "dice_ce"
    batch_dice: bool = True  # the plan's choice (configs interpolate ${plan.batch_dice})
    dice_smooth: float = DICE_SMOOTH  # nnUNetTrainerDiceCELoss_noSmooth: 0
    weight_dice: float = 1.0
    weight_ce: float = 1.0
    topk_percent: float = 10.0  # topk / dice_topk: the hardest k % of voxels
    label_smoothing: float = 0.0  # cross-entropy terms (nnUNetTrainerTopk10LossLS01: 0.1)
    # one weight per network output (background first, or one per region): the cross-entropy's class weights and
    # the Dice's weighted mean over classes; null: nnU-Net's unweighted loss
    class_weights: list[float] | None = None

    def __post_init__(self) -> None:
        if self.class_weights is not None and (
                not self.class_weights or any(not math.isfinite(w) or w < 0 for w in self.class_weights)
                or not any(w > 0 for w in self.class_weights)):
            raise ValueError(f"class_weights={self.class_weights}: one finite weight >= 0 per network output, "
                             "not all 0 (or null)")


@dataclass(frozen=True)
class _Terms:
    dice: bool
    cross_entropy: Literal["ce", "topk"] | None
    regions: bool  # nnU-Net defines it for region datasets too (sigmoid + BCE)


LOSSES: dict[str, _Terms] = {
    "dice_ce": _Terms(True, "ce", True),
    "dice": _Terms(True, None, True),
    "ce": _Terms(False, "ce", False),
    "topk": _Terms(False, "topk", False),
    "dice_topk": _Terms(True, "topk", False),
}


# what a user's loss may take from the plan (``from_plan: {argument: fact}``)
LOSS_FACTS: dict[str, str] = {
    "num_classes": "network outputs (labels incl. background, or regions)",
    "region_based": "true for region datasets (sigmoid outputs), false for labels (softmax)",
    "ignore_label": "the ignore label's value, or null",
    "batch_dice": "the plan's batch Dice choice",
}


@dataclass(frozen=True)
class CustomLoss:
    """A user's loss class (``loss._target_``), its own arguments and what it takes from the plan."""

    target: str
    arguments: dict[str, Any]
    from_plan: dict[str, str]
    batch_dice: bool  # the plan's (a fact the class may take)

    def build(self, layout: LabelLayout) -> nn.Module:
        facts = {"num_classes": layout.num_outputs, "region_based": layout.has_regions,
                 "ignore_label": layout.ignore_label, "batch_dice": self.batch_dice}
        arguments = {**self.arguments, **{a: facts[f] for a, f in self.from_plan.items()}}
        try:
            return locate_class(self.target, "loss")(**arguments)
        except Exception as e:  # a user's class may raise anything for arguments it cannot take
            raise UserError(f"loss ({self.target}) could not be built: {type(e).__name__}: {e}") from None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


LossChoice = LossSettings | CustomLoss


def check_loss(loss: nn.Module, layout: LabelLayout, spatial_dims: int, where: str = "loss") -> None:
    """One call on a dummy batch in the plan's label layout: the loss must give a finite scalar with a gradient."""
    generator = torch.Generator().manual_seed(0)
    size = (2, layout.num_outputs, *[8] * spatial_dims)
    logits = torch.randn(size, generator=generator, requires_grad=True)
    if layout.has_regions:
        channels = layout.num_outputs + (layout.ignore_label is not None)
        target = torch.randint(0, 2, (2, channels, *size[2:]), generator=generator).float()
    else:
        values = torch.tensor(list(layout.label_values))
        target = values[torch.randint(0, len(values), (2, 1, *size[2:]), generator=generator)].float()
    try:
        value = loss(logits, target)
        if not (isinstance(value, torch.Tensor) and value.numel() == 1 and torch.isfinite(value)):
            raise ValueError(f"returned {value!r}; expected a finite scalar tensor")
        value.backward()
    except Exception as e:  # whatever the user's loss raises on the dummy batch is reported, not a traceback
        raise UserError(f"{where} failed on a dummy batch (logits {list(size)}, target {list(target.shape)} in the "
                        f"plan's label layout): {type(e).__name__}: {' '.join(str(e).split())[:300]}") from None
    if logits.grad is None or not torch.isfinite(logits.grad).all():
        raise UserError(f"{where} gives no finite gradient for the logits; it cannot train the network")


def check_loss_fits(settings: LossSettings, layout: LabelLayout, dataset: str) -> None:
    """A loss nnU-Net only defines for softmax outputs cannot train a region dataset; class weights come one per
    network output of the dataset's plan."""
    weights = settings.class_weights
    if weights is not None and len(weights) != layout.num_outputs:
        raise UserError(f"loss.class_weights has {len(weights)} value(s); {dataset}'s network has "
                        f"{layout.num_outputs} output(s) ({layout.describe()}): give one weight per output, "
                        f"e.g. loss.class_weights=[{','.join(['1.0'] * layout.num_outputs)}]")
    if layout.has_regions and not LOSSES[settings.name].regions:
        usable = ", ".join(n for n, t in LOSSES.items() if t.regions)
        raise UserError(f"loss.name={settings.name} contradicts {dataset}: its labels are {layout.describe()}, and "
                        f"{settings.name} is defined for softmax label outputs only; choose a loss that works "
                        f"on regions: {usable}")


class _GatherWithGradient(torch.autograd.Function):
    """Every rank's tensor, stacked. Backward gives this rank's part the sum of every rank's gradient for it (as
    nnU-Net's AllGatherGrad): each rank's loss is the same function of all parts, so after DDP averages the
    parameter gradients over ranks they equal one process's gradient over the whole batch."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        gathered = [torch.zeros_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, tensor.contiguous())
        return torch.stack(gathered)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[dist.get_rank()]


def across_ranks(statistic: torch.Tensor) -> torch.Tensor:
    """``statistic`` summed over every process of a distributed run (itself in a single process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return _GatherWithGradient.apply(statistic).sum(0)
    return statistic


def soft_dice_loss(probabilities: torch.Tensor, target_onehot: torch.Tensor, batch_dice: bool, do_bg: bool,
                   mask: torch.Tensor | None = None, smooth: float = DICE_SMOOTH,
                   class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """``-mean(dice)`` over classes (and samples unless ``batch_dice``), nnU-Net's memory-efficient soft Dice;
    ``class_weights`` (one per channel, background included): a weighted mean over classes instead."""
    if not do_bg:
        probabilities, target_onehot = probabilities[:, 1:], target_onehot[:, 1:]
        class_weights = None if class_weights is None else class_weights[1:]
    axes = tuple(range(2, probabilities.ndim))
    if mask is not None:
        probabilities, target_onehot = probabilities * mask, target_onehot * mask
    intersect = (probabilities * target_onehot).sum(axes, dtype=torch.float32)
    sum_pred = probabilities.sum(axes, dtype=torch.float32)
    sum_gt = target_onehot.sum(axes, dtype=torch.float32)
    if batch_dice:  # the whole batch: under DDP every rank's part of it (nnU-Net's ddp + batch_dice)
        intersect, sum_pred, sum_gt = (across_ranks(s.sum(0)) for s in (intersect, sum_pred, sum_gt))
    dice = (2 * intersect + smooth) / (sum_gt + sum_pred + smooth).clamp_min(1e-8)
    if class_weights is None:
        return -dice.mean()
    weights = class_weights.to(dice.device, dice.dtype)
    return -((dice * weights).sum(-1) / weights.sum().clamp_min(1e-8)).mean()


def topk_cross_entropy(logits: torch.Tensor, target: torch.Tensor, k_percent: float, ignore_index: int = -100,
                       label_smoothing: float = 0.0, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean CE over the ``k_percent`` % hardest voxels (nnU-Net's TopKLoss; ignored voxels count as 0)."""
    losses = F.cross_entropy(logits, target, reduction="none", ignore_index=ignore_index,
                             label_smoothing=label_smoothing, weight=weight).flatten()
    k = max(int(losses.numel() * k_percent / 100), 1)
    return losses.topk(k, sorted=False).values.mean()


class SegmentationLoss(nn.Module):
    """One resolution's loss.

    Label datasets: targets are label maps ``(b, 1, ...)``. Region datasets: one channel per region, plus a
    last channel marking the ignore label if the dataset has one (nnU-Net's layout).
    """

    def __init__(self, settings: LossSettings, layout: LabelLayout) -> None:
        super().__init__()
        self.settings = settings
        self.terms = LOSSES[settings.name]
        self.region_based = layout.has_regions
        self.ignore_label = layout.ignore_label

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self._regions(logits, target) if self.region_based else self._labels(logits, target)

    def _class_weights(self, logits: torch.Tensor) -> torch.Tensor | None:
        weights = self.settings.class_weights
        return None if weights is None else torch.tensor(weights, dtype=logits.dtype, device=logits.device)

    def _labels(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        s = self.settings
        labels = target[:, 0].long()
        mask = None
        if self.ignore_label is not None:
            mask = (labels != self.ignore_label)[:, None].float()
            labels = torch.where(mask[:, 0].bool(), labels, torch.zeros_like(labels))
        loss = logits.new_zeros(())
        if self.terms.dice and s.weight_dice:
            onehot = F.one_hot(labels, logits.shape[1]).movedim(-1, 1).to(logits.dtype)
            loss = loss + s.weight_dice * soft_dice_loss(logits.softmax(1), onehot, s.batch_dice, do_bg=False,
                                                         mask=mask, smooth=s.dice_smooth,
                                                         class_weights=self._class_weights(logits))
        if self.terms.cross_entropy and s.weight_ce and (mask is None or mask.sum() > 0):
            ce_target = target[:, 0].long()
            ignore = self.ignore_label if self.ignore_label is not None else -100
            weight = self._class_weights(logits)
            ce = topk_cross_entropy(logits, ce_target, s.topk_percent, ignore, s.label_smoothing, weight) \
                if self.terms.cross_entropy == "topk" else \
                F.cross_entropy(logits, ce_target, ignore_index=ignore, label_smoothing=s.label_smoothing,
                                weight=weight)
            loss = loss + s.weight_ce * ce
        return loss

    def _regions(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Sigmoid per region: soft Dice over every region (+ BCE); the ignore channel masks both."""
        s = self.settings
        mask = None
        if self.ignore_label is not None:
            mask = 1 - target[:, -1:].to(logits.dtype)
            target = target[:, :-1]
        target = target.to(logits.dtype)
        loss = logits.new_zeros(())
        if self.terms.dice and s.weight_dice:
            loss = loss + s.weight_dice * soft_dice_loss(logits.sigmoid(), target, s.batch_dice, do_bg=True,
                                                         mask=mask, smooth=s.dice_smooth,
                                                         class_weights=self._class_weights(logits))
        if self.terms.cross_entropy and s.weight_ce:
            # a region's weight scales its voxels' BCE (broadcast over the spatial axes)
            weights = self._class_weights(logits)
            weight = None if weights is None else weights.view(1, -1, *[1] * (logits.ndim - 2))
            if mask is None:
                bce = F.binary_cross_entropy_with_logits(logits, target, weight=weight)
            else:  # nnU-Net: summed over regions, divided by the number of valid voxels
                bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none", weight=weight) * mask
                       ).sum() / mask.sum().clamp_min(1e-8)
            loss = loss + s.weight_ce * bce
        return loss


def deep_supervision_weights(num_outputs: int, lowest: float = 0.0) -> list[float]:
    """1/2^i per output (highest resolution first), the lowest resolution weighted ``lowest``, normalized to sum 1.

    Under DDP nnU-Net uses ``lowest=1e-6``: a head that never contributes to the loss has no gradient, which
    DDP treats as an error. A single output (deep supervision off) gets weight 1.
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
