from __future__ import annotations

import pytest
import torch

from nnlight.training.schedules import PolyLR, WarmupPolyLR


def _lrs(scheduler_factory, epochs: int) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    scheduler = scheduler_factory(optimizer)
    lrs = []
    for _ in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_poly_follows_the_configured_epochs() -> None:
    """nnU-Net's PolyLR: lr * (1 - epoch / max_epochs) ** 0.9, over the epochs actually configured."""
    lrs = _lrs(lambda o: PolyLR(o, max_epochs=50), 50)
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[25] == pytest.approx(0.01 * 0.5 ** 0.9)
    assert lrs[49] == pytest.approx(0.01 * (1 / 50) ** 0.9)


def test_warmup_is_nnunets_linear_increase_then_poly() -> None:
    """nnUNetTrainer_warmup: Lin_incr_LRScheduler lr * (epoch + 1) / 50, then PolyLRScheduler_offset."""
    lrs = _lrs(lambda o: WarmupPolyLR(o, max_epochs=1000, warmup_epochs=50), 60)
    assert lrs[:3] == pytest.approx([0.01 / 50, 0.02 / 50, 0.03 / 50])
    assert lrs[49] == pytest.approx(0.01)
    assert lrs[50] == pytest.approx(0.01)  # poly restarts from the full rate
    assert lrs[59] == pytest.approx(0.01 * (1 - 9 / 950) ** 0.9)


def test_a_schedule_that_cannot_work_is_refused() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    with pytest.raises(ValueError, match="warmup_epochs=50"):
        WarmupPolyLR(optimizer, max_epochs=20, warmup_epochs=50)
    with pytest.raises(ValueError, match="max_epochs=0"):
        PolyLR(optimizer, max_epochs=0)
