from __future__ import annotations

import pytest
import torch

from nnlight.training.schedules import epoch_scheduler, lr_factor


def test_poly_follows_the_configured_epochs() -> None:
    """nnU-Net's PolyLR: lr * (1 - epoch / max_epochs) ** 0.9, over the epochs actually configured."""
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD(params, lr=0.01)
    scheduler = epoch_scheduler(optimizer, "poly", max_epochs=50)
    lrs = []
    for _ in range(50):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[25] == pytest.approx(0.01 * 0.5 ** 0.9)
    assert lrs[49] == pytest.approx(0.01 * (1 / 50) ** 0.9)


def test_cosine_and_warmup() -> None:
    assert lr_factor("cosine", 0, 10) == pytest.approx(1) and lr_factor("cosine", 5, 10) == pytest.approx(0.5)
    assert [lr_factor("warmup_poly", e, 100, warmup_epochs=4) for e in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert lr_factor("warmup_poly", 4, 100, warmup_epochs=4) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        lr_factor("step", 0, 10)  # type: ignore[arg-type]
