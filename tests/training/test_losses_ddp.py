"""Several processes train as one (issue 35, item 1): 2 ranks x batch 1 under DDP (gloo, on the CPU) give the same
losses, gradients and weights after several steps as 1 process x batch 2 on the same samples — the training
step of the real task (the plan's U-Net with deep supervision, Dice + CE, gradient clipping that acts, SGD with
Nesterov momentum), for a 2D and a 3D plan, with batch Dice (its statistics gathered across ranks, as nnU-Net does)
and without it."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from nnlight.data.augmentation import deep_supervision_targets
from nnlight.data.datamodule import deep_supervision_scales
from nnlight.model.network import checked_plan_unet
from nnlight.planning.plans import Architecture
from nnlight.raw.labels import LabelLayout
from nnlight.training.losses import LossSettings
from nnlight.training.task import SegmentationTask

pytestmark = pytest.mark.integration

STEPS = 3
CLIP = 0.05  # small enough that clipping acts on every step (the recipe's 12 rarely does on a tiny network)
LAYOUT = LabelLayout.from_mapping({"background": 0, "a": 1, "b": 2})
PATCH = {2: [16, 16], 3: [8, 16, 16]}
STRIDES = {2: [[1, 1], [2, 2], [2, 2]], 3: [[1, 1, 1], [1, 2, 2], [2, 2, 2]]}


def _task(dims: int, batch_dice: bool) -> SegmentationTask:
    """The plan's U-Net of a small 2D or 3D plan in the training task; the same initial weights in every process.
    Both sides use the distributed loss weights (nnU-Net's 1e-6 on the lowest output under DDP) so that only the
    batch split differs."""
    architecture = Architecture("PlainConvUNet", 3, [4, 8, 16], [[3] * dims] * 3, STRIDES[dims], [2, 2, 2], [2, 2])
    torch.manual_seed(0)
    task = SegmentationTask(checked_plan_unet(architecture, 1, 3, PATCH[dims]), LAYOUT,
                            LossSettings(batch_dice=batch_dice), optimizer=lambda p: torch.optim.SGD(p),
                            scheduler=lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda _: 1.0))
    task.loss = task.configure_loss(distributed=True)
    return task


def _batch(dims: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(2, 1, *PATCH[dims], generator=generator)
    labels = torch.randint(0, 3, (2, 1, *PATCH[dims]), generator=generator).float()
    return images, deep_supervision_targets(labels, deep_supervision_scales(STRIDES[dims]))


def _train(model: nn.Module, task: SegmentationTask, images: torch.Tensor, targets: list[torch.Tensor]
           ) -> dict[str, object]:
    optimizer = torch.optim.SGD(task.parameters(), lr=0.01, momentum=0.99, nesterov=True, weight_decay=3e-5)
    losses, norms = [], []
    for _ in range(STEPS):
        optimizer.zero_grad()
        loss = task.loss(model(images), targets)
        loss.backward()
        norms.append(float(nn.utils.clip_grad_norm_(task.parameters(), CLIP)))
        optimizer.step()
        losses.append(loss.item())
    return {"losses": losses, "norms": norms, "weights": task.network.state_dict(),
            "gradients": {n: p.grad for n, p in task.network.named_parameters()},
            "momentum": [optimizer.state[p]["momentum_buffer"] for p in task.network.parameters()]}


def _device(backend: str, rank: int) -> torch.device:
    return torch.device(f"cuda:{rank}") if backend == "nccl" else torch.device("cpu")


def _rank(rank: int, port: int, dims: int, batch_dice: bool, out: str, backend: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=rank, world_size=2)
    try:
        device = _device(backend, rank)
        task = _task(dims, batch_dice).to(device)
        images, targets = _batch(dims)
        model = nn.parallel.DistributedDataParallel(task, device_ids=[rank] if backend == "nccl" else None)
        local = _train(model, task, images[rank:rank + 1].to(device), [t[rank:rank + 1].to(device) for t in targets])
        torch.save(_on_cpu(local), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def _on_cpu(value: object) -> object:
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _on_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_on_cpu(v) for v in value]
    return value


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def two_ranks_and_one(folder: Path, dims: int, batch_dice: bool, backend: str = "gloo"
                      ) -> tuple[list[dict], dict]:
    """What each of 2 ranks x batch 1 ends with, and what 1 process x batch 2 ends with (benchmarks.ddp_parity
    prints their differences)."""
    out = folder / "rank.pt"
    mp.spawn(_rank, args=(_free_port(), dims, batch_dice, str(out), backend), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.{rank}", weights_only=True) for rank in (0, 1)]
    device = _device(backend, 0)
    task = _task(dims, batch_dice).to(device)
    images, targets = _batch(dims)
    single = _on_cpu(_train(task, task, images.to(device), [t.to(device) for t in targets]))
    assert isinstance(single, dict)
    return ranks, single


def _compare(tmp_path: Path, dims: int, batch_dice: bool, backend: str) -> None:
    ranks, single = two_ranks_and_one(tmp_path, dims, batch_dice, backend)
    # each rank's loss is its sample's CE and (with batch Dice) the whole batch's Dice: their mean is the loss of
    # one process over the batch, step after step
    mean_over_ranks = [(a + b) / 2 for a, b in zip(ranks[0]["losses"], ranks[1]["losses"], strict=True)]
    assert mean_over_ranks == pytest.approx(single["losses"], abs=1e-5)
    assert all(norm > CLIP for norm in single["norms"])  # clipping acted on every step
    assert ranks[0]["norms"] == pytest.approx(single["norms"], rel=1e-4)
    for part in ("weights", "gradients"):
        for name, value in single[part].items():
            assert torch.allclose(ranks[0][part][name], value, atol=1e-5), (part, name)
            assert torch.equal(ranks[0][part][name], ranks[1][part][name]), (part, name)  # the ranks stay in step
    for mine, theirs in zip(ranks[0]["momentum"], single["momentum"], strict=True):
        assert torch.allclose(mine, theirs, atol=1e-5)


CASES = [(2, True), (2, False), (3, False), (3, True)]


@pytest.mark.parametrize(("dims", "batch_dice"), CASES)
def test_two_ranks_of_one_sample_train_as_one_process_of_two(tmp_path: Path, dims: int, batch_dice: bool) -> None:
    _compare(tmp_path, dims, batch_dice, "gloo")


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
@pytest.mark.parametrize(("dims", "batch_dice"), CASES)
def test_two_gpus_of_one_sample_train_as_one_gpu_of_two(tmp_path: Path, dims: int, batch_dice: bool) -> None:
    _compare(tmp_path, dims, batch_dice, "nccl")
