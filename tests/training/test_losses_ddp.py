"""Several processes train as one (issue 35, item 1): 2 ranks x batch 1 under DDP (gloo, on the CPU) give the same
losses and weights after several SGD steps as 1 process x batch 2 on the same samples, with batch Dice (its
statistics gathered across ranks, as nnU-Net does) and without it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from nnlight.raw.labels import LabelLayout
from nnlight.training.losses import LossSettings, SegmentationLoss

pytestmark = pytest.mark.integration

STEPS = 3
LAYOUT = LabelLayout.from_mapping({"background": 0, "a": 1, "b": 2})


def _network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.LeakyReLU(), nn.Conv2d(4, 3, 1))


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(2, 1, 12, 10, generator=generator)
    labels = torch.randint(0, 3, (2, 1, 12, 10), generator=generator).float()
    return images, labels


def _train(network: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_dice: bool) -> list[float]:
    loss_fn = SegmentationLoss(LossSettings(batch_dice=batch_dice), LAYOUT)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = loss_fn(network(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _rank(rank: int, port: int, batch_dice: bool, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        network = nn.parallel.DistributedDataParallel(_network())
        images, labels = _batch()
        losses = _train(network, images[rank:rank + 1], labels[rank:rank + 1], batch_dice)
        torch.save({"losses": losses, "weights": network.module.state_dict()}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("batch_dice", [True, False])
def test_two_ranks_of_one_sample_train_as_one_process_of_two(tmp_path: Path, batch_dice: bool) -> None:
    out = tmp_path / "rank.pt"
    mp.spawn(_rank, args=(_free_port(), batch_dice, str(out)), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.{rank}", weights_only=True) for rank in (0, 1)]
    images, labels = _batch()
    single = _network()
    losses = _train(single, images, labels, batch_dice)
    # each rank's loss is its samples' CE and (with batch Dice) the whole batch's Dice: their mean is the loss of
    # one process over the batch, step after step
    mean_over_ranks = [(a + b) / 2 for a, b in zip(ranks[0]["losses"], ranks[1]["losses"], strict=True)]
    assert mean_over_ranks == pytest.approx(losses, abs=1e-6)
    for name, value in single.state_dict().items():
        assert torch.allclose(ranks[0]["weights"][name], value, atol=1e-6), name
        assert torch.equal(ranks[0]["weights"][name], ranks[1]["weights"][name]), name  # the ranks stay in step
